"""Alembic's environment: always a connection handed over by tokenweave (no alembic.ini)."""

from __future__ import annotations

from alembic import context

from tokenweave.coordinator._db import Base


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "tokenweave's migrations run when a coordinator opens its database (open_database), "
            "which hands them a connection; they have no alembic.ini"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite alters a table by copying it: Alembic's batch mode does that.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
