"""Where replicas live: rendezvous hashing, repair plans and possession audits (pure domain).

Rendezvous (highest-random-weight) hashing ranks every node for a block by
sha256(cid || node id); the first `k` live nodes hold it. When a node leaves, only the blocks it
held move, and each to the next node in its own ranking; no table needs rebalancing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from tokenweave.storage._cid import CID

DEFAULT_REPLICATION = 3


def ranking(cid: CID, nodes: Iterable[str]) -> list[str]:
    """Nodes in order of preference for `cid`."""
    key = bytes(cid)
    return sorted(nodes, key=lambda n: hashlib.sha256(key + n.encode()).digest(), reverse=True)


def placement(cid: CID, nodes: Iterable[str], replicas: int = DEFAULT_REPLICATION) -> list[str]:
    """The nodes that should hold `cid` (fewer when fewer nodes exist)."""
    return ranking(cid, nodes)[:replicas]


@dataclass(frozen=True, slots=True)
class Copy:
    """Copy block `cid` from one of `sources` to `target`."""

    cid: CID
    sources: tuple[str, ...]
    target: str


def repair_plan(
    providers: Mapping[CID, Collection[str]],
    live: Collection[str],
    replicas: int = DEFAULT_REPLICATION,
    *,
    returning: Collection[str] = (),
    avoid: Mapping[CID, Collection[str]] | None = None,
) -> tuple[list[Copy], list[CID]]:
    """Copies that bring every block back to `replicas` holders, and the blocks that no live
    node holds (lost until a holder returns).

    Copies come from live holders and go to live nodes, in each block's rendezvous order.
    Holders in `returning` (gone less than the grace period) still count toward `replicas`, so
    a node that restarts does not set off a wave of copies; they are neither sources nor
    targets. `avoid` names, per block, nodes not to copy it to (they refused it lately).
    """
    copies: list[Copy] = []
    lost: list[CID] = []
    for cid, holders in providers.items():
        alive = [n for n in holders if n in live]
        away = [n for n in holders if n in returning and n not in live]
        if not alive:
            if not away:
                lost.append(cid)
            continue
        missing = replicas - len(alive) - len(away)
        if missing <= 0:
            continue
        refused = avoid.get(cid, ()) if avoid else ()
        targets = [n for n in ranking(cid, live) if n not in alive and n not in refused]
        targets = targets[:missing]
        copies.extend(Copy(cid, tuple(sorted(alive)), t) for t in targets)
    return copies, lost


def possession_proof(nonce: bytes, block: bytes) -> bytes:
    """What a provider answers to an audit: only a holder of the block can compute it."""
    return hashlib.sha256(nonce + block).digest()
