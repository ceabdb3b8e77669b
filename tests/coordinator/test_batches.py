"""Batches: calls that arrive while a batch is handled form the next one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Sequence
from typing import Any

import pytest

from tokenweave.coordinator._batches import Batches


class _Owner:
    """Runs drains as tasks and keeps them, as the dispatcher does."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()

    def spawn(self, drain: Coroutine[Any, Any, None]) -> None:
        self.tasks.add(asyncio.get_running_loop().create_task(drain))


async def test_calls_that_arrive_during_a_batch_form_the_next_one() -> None:
    seen: list[list[int]] = []
    gate = asyncio.Event()

    async def handle(items: Sequence[int]) -> list[BaseException | None]:
        seen.append(list(items))
        await gate.wait()  # the write of this batch takes a while
        return [ValueError(f"odd {i}") if i % 2 else None for i in items]

    owner = _Owner()
    batches = Batches(handle, owner.spawn)
    calls = [asyncio.create_task(batches.submit(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert seen == [[0, 1, 2, 3, 4]]  # all queued before the drain ran: one batch
    late = [asyncio.create_task(batches.submit(i)) for i in (5, 6)]
    await asyncio.sleep(0.01)
    assert len(batches) == 2  # waiting for the first batch to be written
    gate.set()
    outcome = await asyncio.gather(*calls, *late, return_exceptions=True)
    assert seen == [[0, 1, 2, 3, 4], [5, 6]]
    assert [None if o is None else str(o) for o in outcome] == [
        None, "odd 1", None, "odd 3", None, "odd 5", None,
    ]  # fmt: skip
    await batches.submit(8)  # quiet again: handled alone, at once
    assert seen[-1] == [8]


async def test_a_failing_handler_fails_every_call_of_its_batch_and_the_next_still_runs() -> None:
    calls = 0

    async def handle(items: Sequence[str]) -> list[BaseException | None]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database gone")
        return [None] * len(items)

    batches = Batches(handle, _Owner().spawn)
    first = await asyncio.gather(batches.submit("a"), batches.submit("b"), return_exceptions=True)
    assert [str(e) for e in first] == ["database gone", "database gone"]
    await batches.submit("c")


async def test_a_caller_that_gives_up_does_not_stop_its_batch() -> None:
    handled: list[str] = []

    async def handle(items: Sequence[str]) -> list[BaseException | None]:
        await asyncio.sleep(0.02)
        handled.extend(items)
        return [None] * len(items)

    batches = Batches(handle, _Owner().spawn)
    call = asyncio.create_task(batches.submit("x"))
    await asyncio.sleep(0.005)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await batches.submit("y")
    assert handled == ["x", "y"]


async def test_a_batch_holds_at_most_so_many() -> None:
    sizes: list[int] = []

    async def handle(items: Sequence[int]) -> list[BaseException | None]:
        sizes.append(len(items))
        await asyncio.sleep(0)
        return [None] * len(items)

    batches = Batches(handle, _Owner().spawn, most=3)
    await asyncio.gather(*(batches.submit(i) for i in range(7)))
    assert sizes == [3, 3, 1]


async def test_lag_is_the_age_of_the_oldest_call_waiting_or_handled() -> None:
    gate = asyncio.Event()

    async def handle(items: Sequence[int]) -> list[BaseException | None]:
        await gate.wait()
        return [None] * len(items)

    batches = Batches(handle, _Owner().spawn)
    assert batches.lag(time.monotonic()) == 0.0
    first = asyncio.create_task(batches.submit(1))
    await asyncio.sleep(0.05)
    later = asyncio.create_task(batches.submit(2))
    await asyncio.sleep(0)
    assert batches.lag(time.monotonic()) >= 0.05  # the batch being handled holds the oldest
    gate.set()
    await asyncio.gather(first, later)
    assert batches.lag(time.monotonic()) == 0.0
