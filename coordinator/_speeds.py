"""Observed speeds: what placement believes of a node's speed is what the coordinator has seen.

A node reports its tokens/s at registration (its calibration). Anyone can claim anything, and a
node that claimed 1e10 tokens/s would be expected to finish every shard first and take all the
work. So placement uses the claim only up to a cap:

* a node with no finished shard of a model is capped at `initial_tokens_per_second` (it starts
  small and earns its share);
* afterwards at `leeway` × its observed speed, an exponentially weighted mean of the model tokens
  of each shard over the time it took, from the moment the node could start it (sent, or its
  previous result on the lane) to its result.

Plain Python, no I/O: the dispatcher calls `sent` and `finished` and asks `believed`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Weight of the newest observation in the running mean.
WEIGHT = 0.3


@dataclass(slots=True)
class _Node:
    #: shard id → monotonic time it was sent.
    sent: dict[str, float] = field(default_factory=dict)
    #: When the node's last result came back (it runs one shard at a time).
    last_result: float = 0.0
    #: model → observed tokens per second.
    observed: dict[str, float] = field(default_factory=dict)


class ObservedSpeeds:
    def __init__(self, initial_tokens_per_second: float, leeway: float = 2.0) -> None:
        self.initial = initial_tokens_per_second
        self.leeway = leeway
        self._nodes: dict[str, _Node] = {}

    def sent(self, node_id: str, shard_id: str, now: float) -> None:
        self._nodes.setdefault(node_id, _Node()).sent[shard_id] = now

    def finished(
        self, node_id: str, shard_id: str, model: str, tokens: int, now: float
    ) -> float | None:
        """A checked result came back; returns the speed it showed (None if it was not sent
        through here)."""
        node = self._nodes.get(node_id)
        if node is None or shard_id not in node.sent:
            return None
        started = max(node.sent.pop(shard_id), node.last_result)
        node.last_result = now
        speed = tokens / max(now - started, 1e-3)
        previous = node.observed.get(model)
        node.observed[model] = (
            speed if previous is None else WEIGHT * speed + (1 - WEIGHT) * previous
        )
        return speed

    def dropped(self, node_id: str, shard_id: str) -> None:
        """The node stopped running the shard without a result."""
        node = self._nodes.get(node_id)
        if node is not None:
            node.sent.pop(shard_id, None)

    def believed(self, node_id: str, model: str, claimed: float) -> float:
        """The speed placement plans with: the claim, capped by what was seen."""
        node = self._nodes.get(node_id)
        observed = node.observed.get(model) if node is not None else None
        cap = self.initial if observed is None else self.leeway * observed
        return min(claimed, cap)

    def observed(self, node_id: str, model: str) -> float | None:
        node = self._nodes.get(node_id)
        return node.observed.get(model) if node is not None else None
