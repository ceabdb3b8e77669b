"""Job events: wakes the watchers of a job each time it changes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from tokenweave.types import JobInfo

T = TypeVar("T")


class _Broadcast:
    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.watchers = 0

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until the next notify, or `seconds` at most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


class JobEvents:
    """One broadcast per watched job; forgotten when its last watcher leaves."""

    def __init__(self, poll_s: float = 1.0, min_interval_s: float = 0.1) -> None:
        self._jobs: dict[str, _Broadcast] = {}
        self._poll_s = poll_s
        self._min_interval = min_interval_s
        #: Tells the other coordinators sharing the database (their watchers wake too).
        self.publish: Callable[[str], None] | None = None

    def notify(self, job_id: str) -> None:
        """The job changed here: wake its watchers, here and on the other coordinators."""
        self.wake(job_id)
        if self.publish is not None:
            self.publish(job_id)

    def wake(self, job_id: str) -> None:
        """Wake the job's watchers on this coordinator."""
        broadcast = self._jobs.get(job_id)
        if broadcast is not None:
            broadcast.notify()

    async def watch(
        self, job_id: str, after_version: int, view: Callable[[str], Awaitable[JobInfo]]
    ) -> AsyncIterator[JobInfo]:
        """Yield the job (`view(job_id)`) each time it changes past `after_version`, until it is
        finished. Changes are also polled every `poll_s`, in case a notify was missed; views
        are `min_interval_s` apart at least (a job of many small shards changes thousands of
        times a second: its watchers get its progress, not each change)."""
        loop = asyncio.get_running_loop()
        current, viewed = await view(job_id), loop.time()
        broadcast = self._jobs.setdefault(job_id, _Broadcast())
        broadcast.watchers += 1
        try:
            while True:
                if current.version > after_version:
                    after_version = current.version
                    yield current
                if current.state.finished:
                    return
                await broadcast.wait(self._poll_s)
                await asyncio.sleep(max(0.0, viewed + self._min_interval - loop.time()))
                current, viewed = await view(job_id), loop.time()
        finally:
            broadcast.watchers -= 1
            if broadcast.watchers == 0 and self._jobs.get(job_id) is broadcast:
                del self._jobs[job_id]
