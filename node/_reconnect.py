"""Reconnecting: sessions one after another, with jittered exponential backoff between them.

The backoff starts afresh after a session that got as far as registering, so a coordinator that
restarts now and then is rejoined quickly, and one that stays down is not hammered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Backoff:
    """Full-jitter exponential backoff: waits drawn from [0, delay), the delay doubling up to
    `cap_s` after each wait and back to `initial_s` on `reset()`."""

    def __init__(
        self,
        initial_s: float,
        cap_s: float,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._initial = initial_s
        self._cap = cap_s
        self._jitter = jitter
        self.delay = initial_s

    def reset(self) -> None:
        self.delay = self._initial

    def next_wait(self) -> float:
        wait = self._jitter(0, self.delay)
        self.delay = min(self.delay * 2, self._cap)
        return wait


async def keep_connected(
    attempt: Callable[[asyncio.Event], Awaitable[bool]],
    stop: asyncio.Event,
    backoff: Backoff,
) -> None:
    """Run `attempt(stop)` (one session; True if it registered) until `stop` is set, waiting
    `backoff` between attempts. Whatever `attempt` raises ends the loop."""
    while not stop.is_set():
        registered = await attempt(stop)
        if stop.is_set():
            break
        if registered:  # the last session worked: start backing off afresh
            backoff.reset()
        wait = backoff.next_wait()
        logger.info("reconnecting in %.1f s", wait)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
