"""The coordinator's schema migrations (coordinator/migrations) on real SQLite files: a new
database, one made by the release before migrations with data in it, and the ones refused.
(The integration suite runs every migration on PostgreSQL too: `make test-postgres`.)"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from tokenweave.coordinator._db import Base, open_database
from tokenweave.coordinator._migrate import BASELINE, alembic_config, head
from tokenweave.errors import FailedPreconditionError


def _url(path: Path, driver: str = "sqlite") -> str:
    return f"{driver}:///{path}"


def _open(path: Path) -> None:
    async def run() -> None:
        engine, _ = await open_database(_url(path, "sqlite+aiosqlite"))
        await engine.dispose()

    asyncio.run(run())


def _revision(path: Path) -> str | None:
    engine = create_engine(_url(path))
    with engine.connect() as connection:
        revision = MigrationContext.configure(connection).get_current_revision()
    engine.dispose()
    return revision


def _release_before_migrations(path: Path) -> None:
    """A database as the last release without migrations left it: the baseline's tables, its
    `schema` table saying 5, no alembic_version, and some work recorded."""
    engine = create_engine(_url(path))
    with engine.begin() as connection:
        command.upgrade(alembic_config(connection), BASELINE)
        connection.execute(text("DROP TABLE alembic_version"))
        now = dt.datetime(2026, 11, 1)
        connection.execute(
            text(
                "INSERT INTO jobs (job_id, state, workload, options, model, model_sha256, "
                "documents, tokens, items, shards_total, shards_done, tokens_processed, "
                "created_at, error, version, dataset, owner) VALUES ('j1', 'SUCCEEDED', "
                "'embed', '{}', 'm', 'ab', 1, 10, 1, 1, 1, 10, :now, '', 3, '', 'alice')"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO ledger (shard_id, job_id, address, model, tokens, input_tokens, "
                "output_tokens, amount_micro, created_at, withheld) VALUES ('s1', 'j1', "
                "'0xabc', 'm', 10, 10, 0, 10000, :now, 0)"
            ),
            {"now": now},
        )
    engine.dispose()


def test_a_new_database_gets_every_migration(tmp_path: Path) -> None:
    _open(tmp_path / "new.db")
    assert _revision(tmp_path / "new.db") == head()
    engine = create_engine(_url(tmp_path / "new.db"))
    assert "schema" not in inspect(engine).get_table_names()
    engine.dispose()


def test_a_database_of_the_release_before_migrations_is_upgraded_with_its_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _release_before_migrations(path)
    _open(path)
    assert _revision(path) == head()
    engine = create_engine(_url(path))
    with engine.connect() as connection:
        jobs = connection.execute(text("SELECT job_id, owner, tokens FROM jobs")).all()
        ledger = connection.execute(text("SELECT shard_id, amount_micro FROM ledger")).all()
        tables = inspect(connection).get_table_names()
    engine.dispose()
    assert [tuple(r) for r in jobs] == [("j1", "alice", 10)]
    assert [tuple(r) for r in ledger] == [("s1", 10000)]
    assert "schema" not in tables
    _open(path)  # opening again changes nothing
    assert _revision(path) == head()


def test_an_older_schema_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "older.db"
    _release_before_migrations(path)
    engine = create_engine(_url(path))
    with engine.begin() as connection:
        connection.execute(text("UPDATE schema SET version = 4"))
    engine.dispose()
    with pytest.raises(FailedPreconditionError, match=r"older tokenweave \(schema 4\).*fresh"):
        _open(path)


def test_a_database_upgraded_by_a_newer_tokenweave_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    _open(path)
    engine = create_engine(_url(path))
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(FailedPreconditionError, match="revision 9999, which this tokenweave"):
        _open(path)


def test_the_tables_and_the_migrations_agree(tmp_path: Path) -> None:
    """A change to the tables in _db.py needs its migration (python -m
    tokenweave.coordinator.migrations "what changed")."""
    path = tmp_path / "head.db"
    _open(path)
    engine = create_engine(_url(path))
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_every_migration_goes_down_and_up_again(tmp_path: Path) -> None:
    path = tmp_path / "roundtrip.db"
    _open(path)
    engine = create_engine(_url(path))
    with engine.begin() as connection:
        config = alembic_config(connection)
        command.downgrade(config, "base")
        assert inspect(connection).get_table_names() == ["alembic_version"]
        command.upgrade(config, "head")
    engine.dispose()
    assert _revision(path) == head()
