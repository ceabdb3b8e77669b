"""Standing: the one owner of a node's reputation.

Audits (custody) and verifications (dispatch) report here. Each report is written to the database
and applied to the live view in one step: the reputation placement reads (`reputation`,
`allowed`) is the one just written, and a node that falls below `min_reputation` is cut off at
once through the listeners (the dispatcher closes its lane and requeues its work) — whichever
path brought it there.

What a node costs the network is paid here too:

- a shard it reports failed cuts its reputation (by FAILURE_CUT, milder than a wrong output's)
  and sends it to rest;
- work it gives back unfinished (it hung up, missed its heartbeats, handed back, or registered
  again) sends it to rest. That costs time, not reputation: a power cut is not a lie, but a node
  that takes work and leaves again and again waits longer each time (REST_BASE_S, doubling up to
  REST_MAX_S, like Petals' bans) and so cannot hold a job back;
- a node caught returning a wrong output is vetted again: all its work is verified until it has
  a new record.

A resting node gets no work; an accepted result ends its strikes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import AuditRow, BlockProviderRow, NodeRow, VerificationRow, utcnow
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.errors import PermissionDeniedError

logger = logging.getLogger(__name__)

#: A passed audit or verification gives back this much reputation (up to 1.0); a failed one
#: multiplies it by REPUTATION_CUT.
REPUTATION_GAIN = 0.02
REPUTATION_CUT = 0.5
#: A shard reported failed multiplies the node's reputation by this.
FAILURE_CUT = 0.9
#: The first rest after a failure or an abandonment, and the longest (each strike doubles it).
REST_BASE_S = 1.0
REST_MAX_S = 300.0

#: Called with (node_id, reputation) when a node falls below the threshold.
CutoffListener = Callable[[str, float], None]


def next_reputation(reputation: float, passed: bool) -> float:
    return min(1.0, reputation + REPUTATION_GAIN) if passed else reputation * REPUTATION_CUT


def rest_seconds(strikes: int, base_s: float = REST_BASE_S) -> float:
    """How long a node rests after its `strikes`-th strike in a row."""
    return min(REST_MAX_S, base_s * 2.0 ** min(strikes - 1, 32)) if strikes > 0 else 0.0


class Standing:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ledger: RewardLedger,
        min_reputation: float = 0.0,
        vetting_results: int = 0,
        rest_base_s: float = REST_BASE_S,
    ) -> None:
        self._db = sessions
        self._ledger = ledger
        self.min_reputation = min_reputation
        self.vetting_results = vetting_results
        self.rest_base_s = rest_base_s
        #: Reputation of every node seen since start, as last written.
        self._known: dict[str, float] = {}
        #: Verified results of each node that agreed with another node's.
        self._agreed: dict[str, int] = {}
        #: Strikes in a row (failures and abandonments) and the monotonic end of the rest.
        self._strikes: dict[str, int] = {}
        self._rest_until: dict[str, float] = {}
        self._listeners: list[CutoffListener] = []

    def on_cutoff(self, listener: CutoffListener) -> None:
        self._listeners.append(listener)

    def admit(self, node: NodeRow) -> None:
        """At registration: PERMISSION_DENIED for a node below the threshold."""
        if node.reputation < self.min_reputation:
            raise PermissionDeniedError(
                f"node {node.node_id} is refused: its reputation {node.reputation:.2f} is below "
                f"{self.min_reputation} after {node.verifications_failed} wrong outputs and "
                f"{node.audits_failed} failed audits"
            )
        self._known[node.node_id] = node.reputation
        self._agreed[node.node_id] = node.agreed_since_caught or 0

    def vetted(self, node_id: str) -> bool:
        """Whether the node has a record: `vetting_results` of its results agreed with another
        node's. Until then all its work is verified."""
        return self._agreed.get(node_id, 0) >= self.vetting_results

    def resting(self, node_id: str, now: float | None = None) -> bool:
        """Whether the node rests after a strike: it gets no work until the rest ends."""
        until = self._rest_until.get(node_id)
        return until is not None and until > (time.monotonic() if now is None else now)

    def rests_ending(self, since: float, now: float) -> bool:
        """Whether a rest ended in (since, now]: the queue may have work for that node."""
        return any(since < until <= now for until in self._rest_until.values())

    def _strike(self, node_id: str) -> float:
        strikes = self._strikes.get(node_id, 0) + 1
        self._strikes[node_id] = strikes
        rest = rest_seconds(strikes, self.rest_base_s)
        self._rest_until[node_id] = time.monotonic() + rest
        return rest

    def record_success(self, node_id: str) -> None:
        """An accepted result: the node's strikes are forgiven."""
        if self._strikes.pop(node_id, None) is not None:
            self._rest_until.pop(node_id, None)

    async def record_abandoned(self, node_id: str, shards: int) -> float:
        """The node gave back `shards` unfinished: a strike. Returns the rest in seconds."""
        rest = self._strike(node_id)
        async with self._db.begin() as session:
            node = await session.get(NodeRow, node_id)
            if node is not None:
                node.shards_abandoned += shards
        logger.info(
            "node %s gave back %d shards unfinished; it rests %.0f s", node_id, shards, rest
        )
        return rest

    async def record_failure(self, node_id: str) -> float:
        """The node reported a shard failed: a strike and a reputation cut (FAILURE_CUT).
        Returns its reputation afterwards."""
        self._strike(node_id)
        async with self._db.begin() as session:
            node = await session.get(NodeRow, node_id)
            if node is None:
                return 0.0
            node.shards_failed += 1
            node.reputation *= FAILURE_CUT
            reputation = node.reputation
        self._apply(node_id, reputation)
        return reputation

    def reputation(self, node_id: str) -> float:
        return self._known.get(node_id, 0.0)

    def allowed(self, node_id: str) -> bool:
        return self.reputation(node_id) >= self.min_reputation

    def check_allowed(self, node_id: str) -> None:
        """PERMISSION_DENIED for a node cut off (below the threshold) since it registered."""
        if not self.allowed(node_id):
            raise PermissionDeniedError(
                f"node {node_id} is cut off: its reputation {self.reputation(node_id):.2f} is "
                f"below {self.min_reputation}"
            )

    def _apply(self, node_id: str, reputation: float) -> None:
        was_allowed = self.allowed(node_id)
        self._known[node_id] = reputation
        if was_allowed and not self.allowed(node_id):
            logger.warning(
                "node %s cut off: reputation %.2f is below %s",
                node_id,
                reputation,
                self.min_reputation,
            )
            for listener in self._listeners:
                listener(node_id, reputation)

    async def record_audit(self, cid: str, node_id: str, passed: bool, reason: str) -> float:
        """Record an audit. A failure also drops the node's record of the block (the repair
        loop copies it again). Returns the node's reputation afterwards."""
        async with self._db.begin() as session:
            session.add(
                AuditRow(
                    cid=cid, node_id=node_id, passed=passed, reason=reason, created_at=utcnow()
                )
            )
            if not passed:
                await session.execute(
                    delete(BlockProviderRow).where(
                        BlockProviderRow.cid == cid, BlockProviderRow.node_id == node_id
                    )
                )
            node = await session.get(NodeRow, node_id)
            if node is None:
                return 0.0
            if passed:
                node.audits_passed += 1
            else:
                node.audits_failed += 1
            node.reputation = next_reputation(node.reputation, passed)
            reputation = node.reputation
        self._apply(node_id, reputation)
        return reputation

    async def record_verification(
        self,
        shard_id: str,
        agreed: Sequence[str],
        caught: Sequence[tuple[str, float]],
    ) -> dict[str, float]:
        """Record a verification. Nodes that agreed gain a little reputation; a node caught
        returning a wrong output loses half of it and its rewards for the open epoch (through
        the ledger, in the same transaction). Returns each node's reputation afterwards."""
        now = utcnow()
        reputations: dict[str, float] = {}
        async with self._db.begin() as session:
            for node_id, ok, score in [
                *((n, True, 1.0) for n in agreed),
                *((n, False, s) for n, s in caught),
            ]:
                session.add(
                    VerificationRow(
                        shard_id=shard_id, node_id=node_id, agreed=ok, cosine=score, created_at=now
                    )
                )
                node = await session.get(NodeRow, node_id)
                if node is None:
                    continue
                node.reputation = next_reputation(node.reputation, ok)
                if ok:
                    node.verifications_passed += 1
                    node.agreed_since_caught += 1
                    self._agreed[node_id] = node.agreed_since_caught
                else:
                    node.verifications_failed += 1
                    node.agreed_since_caught = 0  # vetted again from scratch
                    self._agreed[node_id] = 0
                    await self._ledger.withhold(session, node.address)
                reputations[node_id] = node.reputation
        for node_id, reputation in reputations.items():
            self._apply(node_id, reputation)
        return reputations
