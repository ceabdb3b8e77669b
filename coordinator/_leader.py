"""One coordinator at a time does what must happen once: settling epochs on the chain.

On PostgreSQL that coordinator holds a session-level advisory lock on a connection of its own;
when it dies, its connection closes, the server releases the lock, and the next coordinator to
ask takes it over (each asks every settlement round). The connection is checked before each
round, so a holder that lost its database stops settling at once. A SQLite database belongs to
one coordinator, which always leads.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = logging.getLogger(__name__)

#: The advisory lock key of epoch settlement ("twsettle" as a 64-bit integer).
SETTLEMENT_LOCK = int.from_bytes(b"twsettle", "big") - 2**63


class Leadership:
    def __init__(self, engine: AsyncEngine, key: int, what: str) -> None:
        self._engine = engine
        self._key = key
        self._what = what
        self._connection: AsyncConnection | None = None

    @property
    def shared(self) -> bool:
        """Whether other coordinators may share the database (PostgreSQL)."""
        return self._engine.dialect.name == "postgresql"

    async def held(self) -> bool:
        """Whether this coordinator leads now: it keeps the lock while its connection lives,
        and tries to take it when it has none."""
        if not self.shared:
            return True
        if self._connection is not None:
            try:
                await self._connection.execute(text("SELECT 1"))
                return True
            except Exception as exc:
                logger.warning("lost the lead of %s: %s", self._what, exc)
                await self._drop()
        try:
            connection = await self._engine.connect()
        except Exception:
            return False
        try:
            connection = await connection.execution_options(isolation_level="AUTOCOMMIT")
            taken = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            )
        except Exception:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            return False
        if not taken:
            await connection.close()
            return False
        self._connection = connection
        logger.info("this coordinator leads %s now", self._what)
        return True

    async def release(self) -> None:
        """Give the lead up (on shutdown): another coordinator takes it at its next round."""
        if self._connection is None:
            return
        try:
            await self._connection.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
            )
        except Exception as exc:
            logger.debug("advisory unlock failed: %s", exc)
        await self._drop()

    async def _drop(self) -> None:
        """Close the lock's connection for good (never back into the pool, where a lock that
        failed to unlock would live on)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.invalidate()
            with contextlib.suppress(Exception):
                await connection.close()
