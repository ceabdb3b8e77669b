"""`python -m tokenweave.coordinator.migrations "what changed"`: write the next revision.

Alembic compares the tables in _db.py with a scratch SQLite database brought to the current
head, and writes the difference as a new file in versions/: read it, fix what autogenerate
cannot know (renames, data to move), and commit it with the change to the tables.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from tokenweave.coordinator._migrate import alembic_config, head


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].strip():
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite:///{Path(scratch) / 'scratch.db'}")
        with engine.begin() as connection:
            config = alembic_config(connection)
            command.upgrade(config, "head")
            number = int(head()) + 1
            command.revision(config, message=argv[0], autogenerate=True, rev_id=f"{number:04d}")
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
