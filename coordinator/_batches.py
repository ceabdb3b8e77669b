"""Batches: calls that arrive while one batch is being handled wait and form the next.

Group commit, as databases do it: the first caller starts a drain; while the drain writes a
batch, later callers queue; the drain then takes everything queued as its next batch. A quiet
coordinator handles each call alone, at once; a busy one writes hundreds in the time of one.
Each caller waits for its own item's outcome, so errors still reach the one who asked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: Handles a batch; returns, for each item in order, None or the error to raise to its caller.
Handler = Callable[[Sequence[T]], Awaitable[Sequence[BaseException | None]]]


class Batches(Generic[T]):
    def __init__(
        self,
        handle: Handler[T],
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        most: int = 4096,
    ) -> None:
        """`spawn` runs the drain as a task its owner tracks (and cancels at shutdown); a
        batch holds at most `most` items."""
        self._handle = handle
        self._spawn = spawn
        self._most = most
        #: Calls waiting: the item, its caller's future, when it came (monotonic).
        self._queued: list[tuple[T, asyncio.Future[None], float]] = []
        self._draining = False
        #: When the oldest call of the batch being handled came; None: none is.
        self._batch_since: float | None = None

    def __len__(self) -> int:
        """Items waiting for a batch."""
        return len(self._queued)

    def lag(self, now: float) -> float:
        """Seconds the oldest call being handled or waiting has waited (0: none)."""
        since = self._batch_since
        if since is None and self._queued:
            since = self._queued[0][2]
        return max(0.0, now - since) if since is not None else 0.0

    async def submit(self, item: T) -> None:
        """Queue `item` and wait until its batch is handled; raises the item's error."""
        done = asyncio.get_running_loop().create_future()
        self._queued.append((item, done, time.monotonic()))
        if not self._draining:
            self._draining = True
            self._spawn(self._drain())
        await done

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[None], float]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued[: self._most], self._queued[self._most :]
                self._batch_since = batch[0][2]
                try:
                    errors = await self._handle([item for item, _, _ in batch])
                except Exception as exc:  # the handler itself failed: every caller hears it
                    errors = [exc] * len(batch)
                for (_, done, _), error in zip(batch, errors, strict=True):
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
                batch = []
        finally:
            self._draining = False
            self._batch_since = None
            for _, done, _ in batch + self._queued:  # cancelled (shutdown): nobody is left waiting
                if not done.done():
                    done.cancel()
            self._queued = []
