"""Verdicts: what a verification's outcome does to the nodes that ran the shard.

Nodes that agreed gain standing; a node caught returning a wrong output loses half its
reputation and its rewards for the open epoch (`Standing.record_verification`), is told so, is
vetted again from scratch, is slashed on chain with the evidence (`Stakes.slash`, in the
background: the chain may be slow), and every result it returned unchecked in an unfinished job
is put back in the queue (`JobStore.reopen_unverified`) to run elsewhere — before the verified
shard completes, so that the job cannot finish on the caught node's other outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from tokenweave.coordinator._flights import Accept
from tokenweave.coordinator._jobs import JobStore
from tokenweave.coordinator._lanes import Lanes
from tokenweave.coordinator._reopen import Reopened
from tokenweave.coordinator._stakes import Stakes
from tokenweave.coordinator._standing import Standing
from tokenweave.coordinator._views import ShardAck

logger = logging.getLogger(__name__)


class Verdicts:
    def __init__(
        self,
        store: JobStore,
        standing: Standing,
        lanes: Lanes,
        stakes: Stakes,
        spawn: Callable[[Coroutine[Any, Any, Any]], None],
    ) -> None:
        self._store = store
        self._standing = standing
        self._lanes = lanes
        self._stakes = stakes
        self._spawn = spawn

    async def record(
        self, shard_id: str, decision: Accept, digests: Mapping[str, str]
    ) -> dict[str, Reopened]:
        """Record a verified shard's outcome (`digests`: each node's output digest, the
        evidence); returns, for each caught node, its shards that must run again (and the
        later-stage shards withdrawn with them)."""
        if not decision.agreed:
            return {}
        reputations = await self._standing.record_verification(
            shard_id, decision.agreed, decision.caught
        )
        reopened: dict[str, Reopened] = {}
        for node_id, score in decision.caught:
            reopened[node_id] = await self._store.reopen_unverified(node_id)
            logger.warning(
                "node %s returned a wrong output for shard %s (similarity %.4f to the agreed "
                "one): this epoch's rewards withheld, reputation now %.2f, %d shards it returned "
                "unchecked run again",
                node_id,
                shard_id,
                score,
                reputations.get(node_id, 0.0),
                len(reopened[node_id].shards),
            )
            if (lane := self._lanes.get(node_id)) is not None:
                lane.send(ShardAck(shard_id, accepted=False, reason="output disagreed with peers"))
            evidence = {
                "shard": shard_id,
                "node": node_id,
                "output_sha256": digests.get(node_id, ""),
                "agreed": {n: digests.get(n, "") for n in decision.agreed},
                "similarity": round(score, 6),
            }
            self._spawn(self._stakes.slash(node_id, evidence))
        return reopened
