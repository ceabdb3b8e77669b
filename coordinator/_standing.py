"""Standing: the one owner of a node's reputation.

Audits (custody) and verifications (dispatch) report here. Each report is written to the database
and applied to the live view in one step: the reputation placement reads (`reputation`,
`allowed`) is the one just written, and a node that falls below `min_reputation` is cut off at
once through the listeners (the dispatcher closes its lane and requeues its work) — whichever
path brought it there.
"""

from __future__ import annotations

import logging
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

#: Called with (node_id, reputation) when a node falls below the threshold.
CutoffListener = Callable[[str, float], None]


def next_reputation(reputation: float, passed: bool) -> float:
    return min(1.0, reputation + REPUTATION_GAIN) if passed else reputation * REPUTATION_CUT


class Standing:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        ledger: RewardLedger,
        min_reputation: float = 0.0,
        vetting_results: int = 0,
    ) -> None:
        self._db = sessions
        self._ledger = ledger
        self.min_reputation = min_reputation
        self.vetting_results = vetting_results
        #: Reputation of every node seen since start, as last written.
        self._known: dict[str, float] = {}
        #: Verified results of each node that agreed with another node's.
        self._agreed: dict[str, int] = {}
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
        self._agreed[node.node_id] = node.verifications_passed or 0

    def vetted(self, node_id: str) -> bool:
        """Whether the node has a record: `vetting_results` of its results agreed with another
        node's. Until then all its work is verified."""
        return self._agreed.get(node_id, 0) >= self.vetting_results

    def reputation(self, node_id: str) -> float:
        return self._known.get(node_id, 0.0)

    def allowed(self, node_id: str) -> bool:
        return self.reputation(node_id) >= self.min_reputation

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
                    self._agreed[node_id] = node.verifications_passed
                else:
                    node.verifications_failed += 1
                    await self._ledger.withhold(session, node.address)
                reputations[node_id] = node.reputation
        for node_id, reputation in reputations.items():
            self._apply(node_id, reputation)
        return reputations
