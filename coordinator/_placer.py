"""Placer: which connected node runs a shard, when its run is late, and whether it is verified.

It joins what placement needs to know of the live network — the lanes, each node's standing,
the speeds the coordinator has seen (`ObservedSpeeds`), its operator's stake (`Stakes`) — with
the pure rule of `choose_node` (_placement.py). The dispatcher asks; the placer changes nothing
but its speed records.
"""

from __future__ import annotations

import dataclasses
import secrets
import time

from tokenweave.coordinator._lanes import Lanes, NodeLane
from tokenweave.coordinator._placement import NodeLoad, choose_node, peer_fetch_seconds
from tokenweave.coordinator._speeds import ObservedSpeeds
from tokenweave.coordinator._stakes import StakePolicy, Stakes
from tokenweave.coordinator._standing import Standing
from tokenweave.coordinator._verify import DEFAULT_TOLERANCE, chosen_for_verification
from tokenweave.coordinator._views import QueuedShard


@dataclasses.dataclass(frozen=True, slots=True)
class WorkPolicy:
    #: Fraction of shards that also run on a second node, to be compared.
    verify_fraction: float = 0.1
    #: Lowest similarity (the workload's `compare`) at which two outputs of a shard agree.
    tolerance: float = DEFAULT_TOLERANCE
    #: A run past factor × its expected time (from the node's measured speed) + slack gets a
    #: backup copy on another node.
    straggler_factor: float = 3.0
    straggler_slack_s: float = 2.0
    #: The speed placement believes of a node until it has finished a shard of the model (its
    #: claim is capped at this, then at twice what it was seen to do).
    new_node_tokens_per_second: float = 1000.0
    #: A dispute no third node (or the referee) decided within this is given up: its job fails.
    dispute_wait_s: float = 60.0


class Placer:
    def __init__(
        self, lanes: Lanes, standing: Standing, policy: WorkPolicy, stakes: Stakes | None = None
    ) -> None:
        self._lanes = lanes
        self._standing = standing
        self.policy = policy
        self.stakes = stakes or Stakes(None, StakePolicy())
        self.speeds = ObservedSpeeds(policy.new_node_tokens_per_second)
        #: Keys the choice of shards to verify; nodes never see it.
        self._secret = secrets.token_bytes(32)

    def candidates(self, shard: QueuedShard, exclude: set[str]) -> list[NodeLane]:
        """Connected nodes that may run the shard: they run its model file and workload, are
        not draining, late, resting or cut off, have the stake asked for, and are not in
        `exclude`."""
        now = time.monotonic()
        return [
            lane
            for lane in self._lanes
            if not lane.draining
            and not lane.late
            and not self._standing.resting(lane.node_id, now)
            and lane.node_id not in exclude
            and self._standing.allowed(lane.node_id)
            and self.stakes.eligible(lane.node_id)
            and lane.offer(shard) is not None
        ]

    def choose(self, shard: QueuedShard, lanes: list[NodeLane], backlog: int) -> NodeLane | None:
        """The lane to lease the shard to now, or None to keep it queued (`choose_node`)."""
        loads = [
            NodeLoad(
                lane.node_id,
                self.speed(lane, shard)
                * max(self._standing.reputation(lane.node_id), 0.01)
                * max(self.stakes.share(lane.node_id), 0.01),
                lane.load(),
                lane.free_slots(),
                fetch_seconds=0.0
                if lane.node_id in shard.local_nodes
                else peer_fetch_seconds(shard.read_bytes),
            )
            for lane in lanes
        ]
        chosen = choose_node(shard.cost, loads, backlog)
        return None if chosen is None else self._lanes.get(chosen)

    def speed(self, lane: NodeLane, shard: QueuedShard) -> float:
        """The node's claimed speed for the shard's model, capped by what it was seen to do."""
        claimed = lane.models[shard.model].tokens_per_second
        return self.speeds.believed(lane.node_id, shard.model, claimed)

    def deadline(self, lane: NodeLane, shard: QueuedShard) -> float:
        """Seconds the node has for the shard (its queue included) before it gets a backup."""
        expected = (lane.load() + shard.cost) / self.speed(lane, shard)
        return expected * self.policy.straggler_factor + self.policy.straggler_slack_s

    def verify(self, shard: QueuedShard, lane: NodeLane) -> bool:
        """Whether a shard leased to `lane` also runs elsewhere: every shard of a node not yet
        vetted, and a secret-keyed sample of the rest — when another node could run it at all
        (a lone node's result stands as it would anyway, without a copy to wait for)."""
        if not self.candidates(shard, {lane.node_id}):
            return False
        return not self._standing.vetted(lane.node_id) or chosen_for_verification(
            shard.shard_id, self.policy.verify_fraction, self._secret
        )
