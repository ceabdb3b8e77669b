"""Fixtures of the coordinator's unit tests: a database on each engine the coordinator runs on.

PostgreSQL is the server at 127.0.0.1:5432 (every machine of this project has one, CI's too) or
TOKENWEAVE_TEST_DB; a fresh database is made for each test and dropped after it. Where no server
answers, the PostgreSQL case is skipped, saying so.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenweave.coordinator._db import open_database

SERVER = os.environ.get("TOKENWEAVE_TEST_DB", "postgresql+asyncpg://postgres@127.0.0.1:5432")


async def _postgres(statement: str) -> None:
    import asyncpg

    dsn = SERVER.replace("postgresql+asyncpg://", "postgresql://", 1).rstrip("/") + "/postgres"
    connection = await asyncpg.connect(dsn, timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """The URL of a new, empty database (migrated by whoever opens it first)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'coordinator.db'}"
        return
    name = f"tokenweave_unit_{uuid.uuid4().hex[:12]}"
    try:
        await _postgres(f'CREATE DATABASE "{name}"')
    except (OSError, ImportError) as exc:
        pytest.skip(f"no PostgreSQL at {SERVER}: {exc}")
    try:
        yield f"{SERVER.rstrip('/')}/{name}"
    finally:
        await _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    made, _ = await open_database(database_url)
    try:
        yield made
    finally:
        await made.dispose()
