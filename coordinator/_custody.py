"""Custodian: keeps every dataset block at its replication factor and audits the providers.

Each round (every `interval_s`):

* **Repair.** A provider that has been disconnected for longer than the grace period no longer
  counts; `repair_plan` lists the copies that bring each block back to `replicas` connected
  holders, and each copy is a `FetchBlock` to the target node, which fetches the block from the
  live holders over libp2p, verifies it against its CID and confirms. Providers gone for less
  than the grace period still count, so a node that restarts does not set off a wave of copies.
* **Audits.** A few random (block, connected provider) records are challenged: the provider must
  answer sha256(nonce || block) from its own disk. The coordinator minted the challenges when it
  saw the block's bytes at upload and asks each one once, so a provider cannot answer without
  the block. A failed audit costs the provider the record (the next repair copies the block
  again) and half its reputation; a pass restores a little.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from tokenweave.coordinator._datasets import DatasetIndex
from tokenweave.coordinator._lanes import Lanes
from tokenweave.coordinator._standing import Standing
from tokenweave.coordinator._views import AuditChallenge, FetchBlock
from tokenweave.storage import CID
from tokenweave.storage._replicas import possession_proof, repair_plan

logger = logging.getLogger(__name__)

#: Audit questions minted per block at upload.
CHALLENGES_PER_BLOCK = 16


def mint_challenges(data: bytes, count: int = CHALLENGES_PER_BLOCK) -> list[tuple[bytes, bytes]]:
    """(nonce, sha256(nonce || data)) pairs to audit holders of `data` with later."""
    nonces = [secrets.token_bytes(16) for _ in range(count)]
    return [(nonce, possession_proof(nonce, data)) for nonce in nonces]


@dataclass(frozen=True, slots=True)
class CustodyPolicy:
    replicas: int = 3
    #: Seconds a provider may be disconnected before its blocks are copied elsewhere.
    grace_s: float = 60.0
    interval_s: float = 10.0
    audits_per_round: int = 4
    #: Seconds a node gets to copy a block or answer an audit.
    patience_s: float = 30.0
    max_copies_per_round: int = 256
    parallel_copies: int = 8
    #: Seconds a node that failed to copy a block is not asked to copy it again.
    refusal_memory_s: float = 600.0


@dataclass(frozen=True, slots=True)
class RepairRound:
    copied: int
    failed: int
    #: Blocks no connected or returning node holds.
    lost: int


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    cid: str
    node_id: str
    passed: bool
    reason: str
    reputation: float


class Custodian:
    def __init__(
        self,
        lanes: Lanes,
        index: DatasetIndex,
        standing: Standing,
        policy: CustodyPolicy,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lanes = lanes
        self._index = index
        self._standing = standing
        self.policy = policy
        self._clock = clock
        self._started = clock()
        #: When each node was last seen connected (the coordinator's start for those never seen).
        self._seen: dict[str, float] = {}
        #: (block, node) → when the node failed to copy it; not asked again for a while.
        self._refused: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval_s)
            try:
                await self.repair_once()
                await self.audit_once()
            except Exception:
                logger.exception("custody round failed")

    def _observe(self) -> set[str]:
        now = self._clock()
        connected = set(self._lanes.connected())
        for node_id in connected:
            self._seen[node_id] = now
        return connected

    def _returning(self, holders: set[str], connected: set[str]) -> set[str]:
        now = self._clock()
        return {
            n
            for n in holders - connected
            if now - self._seen.get(n, self._started) < self.policy.grace_s
        }

    async def repair_once(self) -> RepairRound:
        connected = self._observe()
        held = await self._index.provider_map()
        holders = set().union(*held.values()) if held else set()
        now = self._clock()
        self._refused = {
            k: t for k, t in self._refused.items() if now - t < self.policy.refusal_memory_s
        }
        avoid: dict[CID, set[str]] = {}
        for cid, node in self._refused:
            avoid.setdefault(CID.parse(cid), set()).add(node)
        copies, lost = repair_plan(
            {CID.parse(cid): nodes for cid, nodes in held.items()},
            connected,
            self.policy.replicas,
            returning=self._returning(holders, connected),
            avoid=avoid,
        )
        if lost:
            logger.warning("%d blocks have no provider online; waiting for one", len(lost))
        if not copies:
            return RepairRound(0, 0, len(lost))
        if len(copies) > self.policy.max_copies_per_round:
            logger.info(
                "%d copies to make; %d this round",
                len(copies),
                self.policy.max_copies_per_round,
            )
            copies = copies[: self.policy.max_copies_per_round]
        addresses = await self._index.peer_addresses()
        gate = asyncio.Semaphore(self.policy.parallel_copies)

        async def copy(cid: str, sources: tuple[str, ...], target: str) -> bool:
            providers = tuple(a for s in sources for a in addresses.get(s, ()))
            async with gate:
                error = await self._lanes.keep_block(
                    target, FetchBlock(cid, providers), self.policy.patience_s
                )
            if error:
                logger.warning("copy of %s to %s failed: %s", cid, target, error)
                self._refused[(cid, target)] = self._clock()
                return False
            await self._index.add_providers(cid, [target])
            return True

        done = await asyncio.gather(*(copy(str(c.cid), c.sources, c.target) for c in copies))
        copied = sum(done)
        logger.info("repair: %d blocks copied, %d failed", copied, len(done) - copied)
        return RepairRound(copied, len(done) - copied, len(lost))

    async def audit_once(self) -> list[AuditOutcome]:
        connected = sorted(self._observe())
        picks = await self._index.sample_holdings(connected, self.policy.audits_per_round)
        return [o for o in await asyncio.gather(*(self._audit(*p) for p in picks)) if o]

    async def _audit(self, cid: str, node_id: str) -> AuditOutcome | None:
        challenge = await self._index.take_challenge(cid)
        if challenge is None:
            logger.debug("no audit challenge left for %s", cid)
            return None
        nonce, expected = challenge
        answer = await self._lanes.audit(
            node_id, AuditChallenge(cid, nonce), self.policy.patience_s
        )
        if answer.left:
            return None  # it left between the sample and the answer: nothing learned
        if answer.error:
            reason = f"the node could not answer: {answer.error}"
        elif not secrets.compare_digest(answer.proof, expected):
            reason = "wrong proof"
        else:
            reason = ""
        passed = not reason
        reputation = await self._standing.record_audit(cid, node_id, passed, reason)
        if passed:
            logger.debug("audit of %s on %s passed", cid, node_id)
        else:
            logger.warning(
                "node %s failed the audit of block %s (%s); reputation now %.2f",
                node_id,
                cid,
                reason,
                reputation,
            )
        return AuditOutcome(cid, node_id, passed, reason, reputation)
