"""Batches: calls that arrive while one batch is being handled wait and form the next.

Group commit, as databases do it: the first caller starts a drain; while the drain writes a
batch, later callers queue; the drain then takes everything queued as its next batch. A quiet
coordinator handles each call alone, at once; a busy one writes hundreds in the time of one.
Each caller waits for its own item's outcome, so errors still reach the one who asked.
"""

from __future__ import annotations

import asyncio
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
        self._queued: list[tuple[T, asyncio.Future[None]]] = []
        self._draining = False

    def __len__(self) -> int:
        """Items waiting for a batch."""
        return len(self._queued)

    async def submit(self, item: T) -> None:
        """Queue `item` and wait until its batch is handled; raises the item's error."""
        done = asyncio.get_running_loop().create_future()
        self._queued.append((item, done))
        if not self._draining:
            self._draining = True
            self._spawn(self._drain())
        await done

    async def _drain(self) -> None:
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._queued:
                batch, self._queued = self._queued[: self._most], self._queued[self._most :]
                try:
                    errors = await self._handle([item for item, _ in batch])
                except Exception as exc:  # the handler itself failed: every caller hears it
                    errors = [exc] * len(batch)
                for (_, done), error in zip(batch, errors, strict=True):
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
                batch = []
        finally:
            self._draining = False
            for _, done in batch + self._queued:  # cancelled (shutdown): nobody is left waiting
                if not done.done():
                    done.cancel()
            self._queued = []
