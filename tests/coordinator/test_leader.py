"""One coordinator settles (coordinator/_leader.py): on PostgreSQL one holder of the advisory
lock among several, taken over when the holder's connection dies or it gives the lead up; on
SQLite the one coordinator always leads."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tokenweave.coordinator._leader import SETTLEMENT_LOCK, Leadership


async def test_one_leader_at_a_time_and_a_successor(engine: AsyncEngine, database_url: str) -> None:
    first = Leadership(engine, SETTLEMENT_LOCK, "settlement")
    if not first.shared:  # SQLite: one coordinator, which leads
        assert await first.held()
        return
    others = [create_async_engine(database_url) for _ in range(2)]
    try:
        second, third = (Leadership(e, SETTLEMENT_LOCK, "settlement") for e in others)
        assert await first.held()
        assert await first.held()  # kept
        assert not await second.held()
        assert not await third.held()

        await first.release()  # a clean shutdown
        assert await second.held()
        assert not await first.held()
        assert not await third.held()

        # The holder dies: the server ends its connection, and with it the lock.
        async with engine.connect() as connection:
            await connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks "
                    "WHERE locktype = 'advisory' AND granted AND pid <> pg_backend_pid()"
                )
            )
        deadline = time.monotonic() + 10
        while not await third.held():  # the server ends the backend, then the lock is free
            assert time.monotonic() < deadline, "nobody took the lead over"
            await asyncio.sleep(0.05)
        assert not await second.held()  # it notices its loss before its next round
        assert not await first.held()
    finally:
        for leadership in (first, second, third):
            await leadership.release()
        for made in others:
            await made.dispose()
