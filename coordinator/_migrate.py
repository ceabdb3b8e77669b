"""Bring a coordinator's database to the schema of this code (Alembic; coordinator/migrations).

`migrate(connection)` runs inside `open_database`'s transaction, before anything else touches
the tables. A new database gets every migration from the first; one made by the release before
migrations (its `schema` table says 5, and it has no `alembic_version`) is stamped at the
baseline first; one made by a newer tokenweave (a revision this code does not know) is refused,
as is one older than the baseline. On PostgreSQL an advisory lock held for the transaction makes
coordinators starting together on one database migrate it once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from tokenweave.errors import FailedPreconditionError

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: The revision of the schema before migrations existed (the `schema` table's version 5).
BASELINE = "0001"
BASELINE_SCHEMA = 5
#: Any number, the same in every coordinator: PostgreSQL's advisory lock for migrating.
_LOCK_KEY = 0x746F6B77  # "tokw"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations in {MIGRATIONS}")
    return revision


def current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def migrate(connection: Connection) -> tuple[str | None, str]:
    """Upgrade the database on `connection` to `head()`; (the revision it had, the one it has)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    config = alembic_config(connection)
    script = ScriptDirectory.from_config(config)
    tables = set(inspect(connection).get_table_names())
    before = current(connection)
    if before is None and "jobs" in tables:
        _stamp_pre_migration_database(connection, config, tables)
        before = BASELINE
    elif before is not None and before not in {s.revision for s in script.walk_revisions()}:
        raise FailedPreconditionError(
            f"the database {_url(connection)} is at schema revision {before}, which this "
            f"tokenweave does not know (it knows up to {script.get_current_head()}): it was "
            "upgraded by a newer tokenweave; run that one, or a fresh --db"
        )
    command.upgrade(config, "head")
    after = current(connection)
    assert after is not None
    if before != after:
        logger.info("database %s: schema %s → %s", _url(connection), before or "new", after)
    return before, after


def _stamp_pre_migration_database(connection: Connection, config: Config, tables: set[str]) -> None:
    """A database of the release before migrations: its `schema` table must say 5."""
    found = (
        connection.execute(text("SELECT version FROM schema")).scalar() if "schema" in tables else 1
    )
    if found != BASELINE_SCHEMA:
        raise FailedPreconditionError(
            f"the database {_url(connection)} was made by an older tokenweave (schema {found}), "
            f"from before migrations (which start at schema {BASELINE_SCHEMA}); start the "
            "coordinator on a fresh --data-dir or --db"
        )
    command.stamp(config, BASELINE)


def _url(connection: Connection) -> str:
    return connection.engine.url.render_as_string(hide_password=True)
