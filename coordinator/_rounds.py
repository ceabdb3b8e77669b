"""The coordinator's background rounds, beside the calls it answers.

* `beat`, every half heartbeat: this coordinator's own heartbeat among the coordinators
  sharing its database, and the shards of those that stopped beating given back (a loop of its
  own, so that a long liveness round cannot make the others take this coordinator for dead);
* `liveness`, every half heartbeat: unclaimed shards claimed, silent nodes expired, stragglers
  backed up, last-seen times written; and every RECONCILE_EVERY rounds, or after a round the
  database failed, shards nothing holds queued again (`Dispatcher.reconcile`).
* `claim_on_news`: as soon as another coordinator says shards are up for claiming (the
  bulletin), claim them rather than at the next round.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tokenweave.coordinator._claims import Instances
from tokenweave.coordinator._dispatch import Dispatcher
from tokenweave.coordinator._errors import database_unreachable
from tokenweave.coordinator._nodes import NodeRegistry

logger = logging.getLogger(__name__)

#: Rounds of `liveness` between two checks for shards held by no one.
RECONCILE_EVERY = 10


class Rounds:
    def __init__(
        self,
        dispatcher: Dispatcher,
        registry: NodeRegistry,
        instances: Instances,
        interval_s: float,
        address: Callable[[], str],
    ) -> None:
        self._dispatcher = dispatcher
        self._registry = registry
        self._instances = instances
        self._interval = interval_s
        self._address = address
        self._news_of_work = asyncio.Event()

    def news_of_work(self) -> None:
        """Another coordinator put shards up for claiming."""
        self._news_of_work.set()

    async def beat(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._instances.beat(self._address())
                await self._instances.take_over_dead()
            except Exception as exc:
                logger.warning("coordinator heartbeat failed: %s: %s", type(exc).__name__, exc)

    async def liveness(self) -> None:
        rounds, reconcile = 0, False
        dispatcher = self._dispatcher
        while True:
            await asyncio.sleep(self._interval)
            rounds += 1
            try:
                await dispatcher.claim()
                await dispatcher.expire_nodes()
                await dispatcher.check_stragglers()
                await self._registry.persist_last_seen()
                if reconcile or dispatcher.needs_reconcile or rounds % RECONCILE_EVERY == 0:
                    await dispatcher.reconcile()
                reconcile = False
            except Exception as exc:
                reconcile = True
                if database_unreachable(exc):
                    logger.warning("database unreachable: %s: %s", type(exc).__name__, exc)
                else:
                    logger.exception("node liveness check failed")

    async def claim_on_news(self) -> None:
        while True:
            await self._news_of_work.wait()
            self._news_of_work.clear()
            try:
                await self._dispatcher.claim()
            except Exception as exc:
                logger.warning("claiming failed: %s: %s", type(exc).__name__, exc)
