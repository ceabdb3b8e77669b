"""Placer: which connected node runs a shard, when its run is late, and whether it is verified.

It joins what placement needs to know of the live network — the lanes, each node's standing,
the speeds the coordinator has seen (`ObservedSpeeds`), its operator's stake (`Stakes`) — with
the pure rule of `choose_node` (_placement.py). The dispatcher asks; the placer changes nothing
but its speed records.
"""

from __future__ import annotations

import dataclasses
import heapq
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

    def candidates(self, shard: QueuedShard, exclude: set[str] | frozenset[str]) -> list[NodeLane]:
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
                self.weighted_speed(lane, shard),
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

    def weighted_speed(self, lane: NodeLane, shard: QueuedShard) -> float:
        """The speed placement weighs the node by: its speed for the shard's model, times its
        reputation and its operator's share of stake (each at least 1 %)."""
        return (
            self.speed(lane, shard)
            * max(self._standing.reputation(lane.node_id), 0.01)
            * max(self.stakes.share(lane.node_id), 0.01)
        )

    def speed(self, lane: NodeLane, shard: QueuedShard) -> float:
        """The node's claimed speed for the shard's model, capped by what it was seen to do."""
        claimed = lane.models[shard.model].tokens_per_second
        return self.speeds.believed(lane.node_id, shard.model, claimed)

    def deadline(self, lane: NodeLane, shard: QueuedShard) -> float:
        """Seconds the node has for the shard (its queue included) before it gets a backup."""
        expected = (lane.load() + shard.cost) / self.speed(lane, shard)
        return expected * self.policy.straggler_factor + self.policy.straggler_slack_s

    def verify(
        self, shard: QueuedShard, lane: NodeLane, candidates: list[NodeLane] | None = None
    ) -> bool:
        """Whether a shard leased to `lane` also runs elsewhere: every shard of a node not yet
        vetted, and a secret-keyed sample of the rest — when another node could run it at all
        (a lone node's result stands as it would anyway, without a copy to wait for).
        `candidates`: the shard's candidates, when the caller has them already."""
        if candidates is None:
            candidates = self.candidates(shard, {lane.node_id})
        if not any(other is not lane for other in candidates):
            return False
        return not self._standing.vetted(lane.node_id) or chosen_for_verification(
            shard.shard_id, self.policy.verify_fraction, self._secret
        )


class PlacementRound:
    """One pass of the dispatcher over its queue, choosing as `choose_node` would for each
    shard in turn, without its cost of every node for every shard.

    With thousands of nodes and of queued shards, asking the placer afresh for each shard made
    a pass cost queued × nodes. Here the shards of one kind (model file and workload) with no
    placement of their own share what the pass learns once: each candidate's weighted speed,
    the free nodes in a heap by expected finish (one heap per shard cost: the order depends on
    it), and the busy node that would finish first. A lease updates the chosen node's entries;
    a choice costs O(log nodes). Once a shard of a kind is held back (a faster busy node would
    finish it sooner), the rest of that kind are too — later shards only see less backlog,
    which holds them back the more. Shards with a placement of their own (nodes to avoid,
    dataset blocks to read) are asked for one by one (`Placer.choose`)."""

    def __init__(self, placer: Placer, lanes: Lanes) -> None:
        self._placer = placer
        #: Free slots left on every node.
        self.free = sum(max(lane.free_slots(), 0) for lane in lanes)
        self._candidates: dict[tuple[str, str, str], list[NodeLane]] = {}
        self._kinds: dict[tuple[str, str, str], _Kind] = {}
        self._held: set[tuple[str, str, str]] = set()
        #: Free slots and held model tokens of the nodes a kind has looked at, kept current
        #: as the pass leases.
        self._slots: dict[str, int] = {}
        self._queued: dict[str, int] = {}

    def lane_for(self, shard: QueuedShard, avoided: set[str], backlog: int) -> NodeLane | None:
        """The lane to lease the shard to now (its free slot is counted), or None."""
        kind = (shard.model, shard.model_sha256, shard.workload)
        if avoided or shard.local_nodes or shard.read_bytes:
            lane = self._placer.choose(shard, self.candidates(shard, avoided), backlog)
        elif kind in self._held:
            return None
        else:
            lane = self._kind(shard, kind).choose(shard.cost, backlog)
            if lane is None:
                self._held.add(kind)
        if lane is not None:
            self._took(lane, shard.cost)
        return lane

    def _kind(self, shard: QueuedShard, kind: tuple[str, str, str]) -> _Kind:
        found = self._kinds.get(kind)
        if found is None:
            found = self._kinds[kind] = _Kind(
                self._placer, shard, self.candidates(shard), self._slots, self._queued
            )
        return found

    def _took(self, lane: NodeLane, cost: int) -> None:
        self.free -= 1
        node_id = lane.node_id
        if node_id not in self._slots:
            return  # no kind has looked at it yet: it will read the lane as it is then
        self._slots[node_id] -= 1
        self._queued[node_id] += cost
        for kind in self._kinds.values():
            kind.changed(node_id, cost)

    def candidates(
        self, shard: QueuedShard, avoided: set[str] | frozenset[str] = frozenset()
    ) -> list[NodeLane]:
        """The shard's candidates (`Placer.candidates`): those of its kind, found once a pass,
        unless it has nodes to avoid (then all the others, or all if none is left)."""
        if avoided:
            return self._placer.candidates(shard, avoided) or self._placer.candidates(shard, set())
        kind = (shard.model, shard.model_sha256, shard.workload)
        lanes = self._candidates.get(kind)
        if lanes is None:
            lanes = self._candidates[kind] = self._placer.candidates(shard, set())
        return lanes


class _Kind:
    """A kind's candidates in one pass: `choose_node`'s rule, with heaps."""

    def __init__(
        self,
        placer: Placer,
        shard: QueuedShard,
        lanes: list[NodeLane],
        slots: dict[str, int],
        queued: dict[str, int],
    ) -> None:
        self._slots = slots
        self._queued = queued
        self._lanes: dict[str, NodeLane] = {}
        self._speed: dict[str, float] = {}
        for lane in lanes:
            speed = placer.weighted_speed(lane, shard)
            if speed > 0:
                self._lanes[lane.node_id] = lane
                self._speed[lane.node_id] = speed
                slots.setdefault(lane.node_id, lane.free_slots())
                queued.setdefault(lane.node_id, lane.load())
        self._total_speed = sum(self._speed.values())
        #: Model tokens the candidates hold (the drain time's numerator).
        self._held = sum(queued[n] for n in self._speed)
        #: Per shard cost: free nodes by (expected finish, node id); entries go stale as nodes
        #: are leased to and are dropped when they reach the top.
        self._free: dict[int, list[tuple[float, str]]] = {}
        #: Per shard cost: the busy node that would finish first (None: none is busy).
        self._busy: dict[int, tuple[float, str] | None] = {}

    def _key(self, node_id: str, cost: int) -> tuple[float, str]:
        return (self._queued[node_id] + cost) / self._speed[node_id], node_id

    def choose(self, cost: int, backlog: int) -> NodeLane | None:
        """`choose_node` for a shard of `cost` tokens with `backlog` tokens waiting."""
        heap = self._free.get(cost)
        if heap is None:
            heap = [self._key(n, cost) for n in self._speed if self._slots[n] > 0]
            heapq.heapify(heap)
            self._free[cost] = heap
        while heap and (self._slots[heap[0][1]] <= 0 or heap[0] != self._key(heap[0][1], cost)):
            heapq.heappop(heap)
        if not heap:
            return None
        best_free = heap[0]
        # Finishing by the time the network drains the backlog, the best free node takes it
        # whatever the busy ones would do (choose_node's rule, asked in the cheap order: the
        # busy nodes are looked at only near the end of the work).
        if best_free[0] > (self._held + max(backlog, cost)) / self._total_speed:
            if cost not in self._busy:
                self._busy[cost] = min(
                    (self._key(n, cost) for n in self._speed if self._slots[n] <= 0),
                    default=None,
                )
            best_busy = self._busy[cost]
            if best_busy is not None and best_busy < best_free:
                return None
        return self._lanes[best_free[1]]

    def changed(self, node_id: str, cost: int) -> None:
        """The pass leased `node_id` a shard of `cost`: its entries move (or it is busy now)."""
        if node_id not in self._speed:
            return
        self._held += cost
        busy = self._slots[node_id] <= 0
        for cost, heap in self._free.items():
            if not busy:
                heapq.heappush(heap, self._key(node_id, cost))
        for cost, best in self._busy.items():
            if busy and (best is None or self._key(node_id, cost) < best):
                self._busy[cost] = self._key(node_id, cost)
