"""Backoff and keep_connected: scripted sessions instead of a coordinator."""

from __future__ import annotations

import asyncio

import pytest

from tokenweave.node._reconnect import Backoff, keep_connected
from tokenweave.node._session import RegistrationRefusedError


def test_backoff_doubles_up_to_its_cap_and_resets() -> None:
    drawn: list[tuple[float, float]] = []

    def jitter(low: float, high: float) -> float:
        drawn.append((low, high))
        return high / 2

    backoff = Backoff(1.0, 5.0, jitter)
    waits = [backoff.next_wait() for _ in range(5)]
    assert drawn == [(0, 1.0), (0, 2.0), (0, 4.0), (0, 5.0), (0, 5.0)]
    assert waits == [0.5, 1.0, 2.0, 2.5, 2.5]
    backoff.reset()
    assert backoff.next_wait() == 0.5


async def test_backoff_starts_afresh_after_a_session_that_registered() -> None:
    delays: list[float] = []

    def jitter(low: float, high: float) -> float:
        delays.append(high)
        return 0.0

    outcomes = iter([False, False, False, True, False])
    stop = asyncio.Event()
    attempts = 0

    async def attempt(stop_: asyncio.Event) -> bool:
        nonlocal attempts
        attempts += 1
        registered = next(outcomes, None)
        if registered is None:
            stop.set()
            return False
        return registered

    await keep_connected(attempt, stop, Backoff(0.001, 0.004, jitter))
    assert attempts == 6
    assert delays == [0.001, 0.002, 0.004, 0.001, 0.002]


async def test_a_refusal_ends_the_reconnect_loop() -> None:
    calls = 0

    async def attempt(stop: asyncio.Event) -> bool:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RegistrationRefusedError("refused this node")
        return False

    with pytest.raises(RegistrationRefusedError):
        await keep_connected(attempt, asyncio.Event(), Backoff(0.001, 0.001, lambda a, b: 0.0))
    assert calls == 2


async def test_stop_ends_the_wait_between_sessions() -> None:
    stop = asyncio.Event()

    async def attempt(stop_: asyncio.Event) -> bool:
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return False

    async with asyncio.timeout(2):
        await keep_connected(attempt, stop, Backoff(60.0, 60.0, lambda a, b: b))
