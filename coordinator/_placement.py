"""Choosing which node runs a shard: the one expected to finish it first.

Each node's expected finish time is (tokens it already holds + the shard's tokens) / its measured
speed. Giving every shard to the earliest finisher spreads work in proportion to speed, and a shard
waits for a busy fast node rather than going to an idle node that would finish it later.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class NodeLoad:
    node_id: str
    tokens_per_second: float
    queued_tokens: int
    free_slots: int


def expected_finish(node: NodeLoad, shard_tokens: int) -> float:
    return (node.queued_tokens + shard_tokens) / node.tokens_per_second


def choose_node(shard_tokens: int, nodes: Iterable[NodeLoad]) -> str | None:
    """The node to lease the shard to now, or None to keep it queued.

    Ties go to the node with the lexicographically smallest id, so the choice is reproducible.
    """
    candidates = [n for n in nodes if n.tokens_per_second > 0]
    if not candidates:
        return None
    best = min(candidates, key=lambda n: (expected_finish(n, shard_tokens), n.node_id))
    return best.node_id if best.free_slots > 0 else None
