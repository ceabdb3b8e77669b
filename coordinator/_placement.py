"""Choosing which node runs a shard.

Each node's expected finish time for a shard is (tokens it already holds + the shard's tokens) /
its measured speed. A shard goes to the node with a free slot that would finish it first, so that
while there is a backlog every node keeps pulling work at its own speed: shares come out in
proportion to speed. Near the end of the work a shard is held back from a slow idle node when a
busy faster node would finish it sooner than the whole network drains what is left — a slow node
must not become the job's tail.

Dataset shards add the time to fetch their documents' blocks from peers for a node that does
not hold them all (`fetch_seconds`), so that work goes to the data when that is not slower.
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
    #: Seconds this node would spend fetching the shard's dataset blocks from peers.
    fetch_seconds: float = 0.0


#: Peer-to-peer block throughput assumed when placing dataset shards, and the cost of one
#: round trip (measured by benchmarks/bench_storage.py: about 41 MB/s on loopback).
PEER_BYTES_PER_SECOND = 40e6
PEER_ROUND_TRIP_S = 0.005


def peer_fetch_seconds(read_bytes: int) -> float:
    """Expected seconds to fetch `read_bytes` of dataset from peers (0 for no bytes)."""
    return PEER_ROUND_TRIP_S + read_bytes / PEER_BYTES_PER_SECOND if read_bytes else 0.0


def expected_finish(node: NodeLoad, shard_tokens: int) -> float:
    return (node.queued_tokens + shard_tokens) / node.tokens_per_second + node.fetch_seconds


def choose_node(
    shard_tokens: int, nodes: Iterable[NodeLoad], backlog_tokens: int = 0
) -> str | None:
    """The node to lease the shard to now, or None to keep it queued.

    `backlog_tokens` counts the tokens of every shard still waiting, this one included. Ties go
    to the smallest node id, so the choice is reproducible.
    """
    candidates = [n for n in nodes if n.tokens_per_second > 0]
    free = [n for n in candidates if n.free_slots > 0]
    if not free:
        return None

    def key(n: NodeLoad) -> tuple[float, str]:
        return expected_finish(n, shard_tokens), n.node_id

    best_free = min(free, key=key)
    best = min(candidates, key=key)
    if best is best_free:
        return best_free.node_id
    held = sum(n.queued_tokens for n in candidates)
    drain = (held + max(backlog_tokens, shard_tokens)) / sum(
        n.tokens_per_second for n in candidates
    )
    return best_free.node_id if expected_finish(best_free, shard_tokens) <= drain else None
