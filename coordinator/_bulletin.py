"""Coordinators sharing a PostgreSQL database tell each other what changed (LISTEN/NOTIFY).

Two kinds of news travel on one channel: a job changed, so that its watchers on every
coordinator wake at once rather than at their next poll; and shards are up for claiming (a job
submitted with its shards unclaimed, a dead coordinator's given back), so that coordinators with
free nodes claim them now rather than at their next liveness round. What one coordinator has to
say within `delay_s` goes out as one notification. Nothing depends on a notification arriving:
watchers poll every second and claims run every round, so a lost one costs latency only (and
the listening connection, when it drops, is opened again).

SQLite has no such channel, and no other coordinator to tell: there the bulletin is silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

CHANNEL = "tokenweave"
#: A notification's payload is at most 8000 bytes; job ids are 32 characters.
_MAX_PAYLOAD = 7_000
_WORK = "*"


def asyncpg_dsn(url: str) -> str | None:
    """The asyncpg DSN of a SQLAlchemy PostgreSQL URL; None for another engine."""
    for prefix in ("postgresql+asyncpg://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix) :]
    return None


def encode(sender: str, jobs: set[str], work: bool) -> list[str]:
    """Payloads of `sender`'s news, each under the size PostgreSQL allows."""
    items = sorted(jobs) + ([_WORK] if work else [])
    payloads, current = [], sender
    for item in items:
        if len(current) + 1 + len(item) > _MAX_PAYLOAD:
            payloads.append(current)
            current = sender
        current += "," + item
    if current != sender:
        payloads.append(current)
    return payloads


def decode(payload: str) -> tuple[str, set[str], bool]:
    """(sender, jobs, work) of a payload; a malformed one yields no news."""
    sender, _, rest = payload.partition(",")
    items = {item for item in rest.split(",") if item}
    return sender, items - {_WORK}, _WORK in items


class Bulletin:
    def __init__(
        self,
        url: str,
        sender: str,
        on_job: Callable[[str], None],
        on_work: Callable[[], None],
        delay_s: float = 0.02,
        reconnect_s: float = 2.0,
    ) -> None:
        self._dsn = asyncpg_dsn(url)
        self._sender = sender
        self.on_job = on_job
        self.on_work = on_work
        self._delay = delay_s
        self._reconnect = reconnect_s
        self._jobs: set[str] = set()
        self._work = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: Any = None

    def start(self) -> None:
        if self._dsn is not None and self._task is None:
            self._task = asyncio.create_task(self._run())

    def job_changed(self, job_id: str) -> None:
        if self._task is not None:
            self._jobs.add(job_id)
            self._wake.set()

    def work_added(self) -> None:
        if self._task is not None:
            self._work = True
            self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        """Keep a listening connection open, and send what this coordinator has to say."""
        import asyncpg  # type: ignore[import-untyped]  # no stubs; the [postgres] extra

        assert self._dsn is not None
        while True:
            try:
                self._connection = await asyncpg.connect(self._dsn, timeout=10)
                await self._connection.add_listener(CHANNEL, self._heard)
                logger.debug("listening for other coordinators' news")
                while not self._connection.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), self._reconnect)
                    if self._wake.is_set():
                        await asyncio.sleep(self._delay)  # gather what follows closely
                        self._wake.clear()
                        await self._send()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("coordinator news channel: %s: %s", type(exc).__name__, exc)
            finally:
                if self._connection is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._connection.close(timeout=2))
                    self._connection = None
            await asyncio.sleep(self._reconnect)

    async def _send(self) -> None:
        jobs, work = self._jobs, self._work
        self._jobs, self._work = set(), False
        for payload in encode(self._sender, jobs, work):
            await self._connection.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: str) -> None:
        sender, jobs, work = decode(payload)
        if sender == self._sender:
            return
        for job_id in jobs:
            self.on_job(job_id)
        if work:
            self.on_work()
