import random
from typing import Any, cast

import pytest

from tokenweave.coordinator import NodeLoad, choose_node
from tokenweave.coordinator._lanes import Lanes, NodeLane
from tokenweave.coordinator._placement import peer_fetch_seconds
from tokenweave.coordinator._placer import PlacementRound, Placer, WorkPolicy
from tokenweave.coordinator._views import QueuedShard
from tokenweave.types import ModelOffer


def _simulate(
    speeds: dict[str, float], shards: int, tokens: int, slots: int
) -> tuple[dict[str, int], float]:
    """Discrete-event run of the placement rule; returns shards per node and the makespan."""
    queues: dict[str, list[float]] = {n: [] for n in speeds}  # finish times of held shards
    placed = dict.fromkeys(speeds, 0)
    remaining, now = shards, 0.0
    while remaining or any(queues.values()):
        while remaining:
            loads = [
                NodeLoad(n, s, len(queues[n]) * tokens, slots - len(queues[n]))
                for n, s in speeds.items()
            ]
            chosen = choose_node(tokens, loads, backlog_tokens=remaining * tokens)
            if chosen is None:
                break
            start = queues[chosen][-1] if queues[chosen] else now
            queues[chosen].append(start + tokens / speeds[chosen])
            placed[chosen] += 1
            remaining -= 1
        now = min(q[0] for q in queues.values() if q)
        for q in queues.values():
            if q and q[0] == now:
                q.pop(0)
    return placed, now


def test_work_is_shared_in_proportion_to_speed() -> None:
    placed, _ = _simulate({"a": 3000.0, "b": 1000.0}, shards=400, tokens=4000, slots=2)
    assert placed["a"] / placed["b"] == pytest.approx(3.0, rel=0.1)


def test_equal_nodes_share_equally() -> None:
    placed, _ = _simulate({"a": 1000.0, "b": 1000.0, "c": 1000.0}, shards=300, tokens=100, slots=2)
    assert max(placed.values()) - min(placed.values()) <= 1


def test_a_very_slow_node_does_not_become_the_tail() -> None:
    placed, makespan = _simulate({"fast": 10_000.0, "slow": 100.0}, shards=20, tokens=1000, slots=2)
    # The slow node needs 10 s per shard; the fast node does all 20 in 2 s.
    assert placed["slow"] == 0
    assert makespan == pytest.approx(2.0)


def test_a_shard_waits_for_a_busy_fast_node_at_the_end_of_the_work() -> None:
    fast = NodeLoad("fast", 10_000.0, queued_tokens=1000, free_slots=0)
    slow = NodeLoad("slow", 100.0, queued_tokens=0, free_slots=2)
    assert choose_node(1000, [fast, slow], backlog_tokens=1000) is None
    # With a long backlog the slow node's help shortens the job.
    assert choose_node(1000, [fast, slow], backlog_tokens=10_000_000) == "slow"


def test_no_nodes_means_no_placement() -> None:
    assert choose_node(10, []) is None
    assert choose_node(10, [NodeLoad("x", 0.0, 0, 1)]) is None
    assert choose_node(10, [NodeLoad("x", 5.0, 10, 0)]) is None


def test_ties_break_by_node_id() -> None:
    loads = [NodeLoad("b", 1.0, 0, 1), NodeLoad("a", 1.0, 0, 1)]
    assert choose_node(5, loads) == "a"


def test_a_dataset_shard_goes_to_a_node_holding_its_blocks() -> None:
    fetch = peer_fetch_seconds(8_000_000)  # 8 MB from peers: 0.2 s at the assumed rate
    holder = NodeLoad("b-holder", 5_000, 0, 1)
    other = NodeLoad("a-other", 5_000, 0, 1, fetch_seconds=fetch)
    assert choose_node(1_000, [other, holder]) == "b-holder"
    # ... unless the holder is busy for longer than the fetch takes.
    busy = NodeLoad("b-holder", 5_000, 5_000, 1)
    assert choose_node(1_000, [other, busy]) == "a-other"
    assert peer_fetch_seconds(0) == 0.0


class _Standing:
    """Every node in good standing, each with its own reputation."""

    def __init__(self, reputation: dict[str, float]) -> None:
        self._reputation = reputation

    def reputation(self, node_id: str) -> float:
        return self._reputation[node_id]

    def resting(self, node_id: str, now: float) -> bool:
        return False

    def allowed(self, node_id: str) -> bool:
        return True


def _network(seed: int) -> tuple[Placer, Lanes]:
    rng = random.Random(seed)
    lanes = Lanes()
    reputation = {}
    for i in range(rng.randint(1, 40)):
        node_id = f"n{i:02d}"
        reputation[node_id] = rng.choice([1.0, 0.5, 0.005])
        lane = NodeLane(
            node_id,
            "token",
            rng.randint(1, 4),
            {"m": ModelOffer("m", "sha", rng.choice([0.0, 50.0, 100.0, 100.0, 400.0, 3000.0]))},
            frozenset({"embed"}),
        )
        for j in range(rng.randint(0, lane.max_inflight)):  # some already busy
            lane.inflight[f"{node_id}-held-{j}"] = _queued(
                f"{node_id}-held-{j}", rng.choice([16, 512])
            )
        lanes.add(lane)
    policy = WorkPolicy(new_node_tokens_per_second=1e9)
    return Placer(lanes, cast(Any, _Standing(reputation)), policy), lanes


def _queued(shard_id: str, cost: int) -> QueuedShard:
    return QueuedShard(shard_id, "job", "embed", "m", "sha", cost, b"")


@pytest.mark.parametrize("seed", range(40))
def test_a_placement_pass_chooses_as_choose_node_would_shard_by_shard(seed: int) -> None:
    """`PlacementRound` keeps heaps instead of asking `choose_node` about every node for every
    shard: over random networks and queues, its choices are exactly the plain rule's."""
    rng = random.Random(seed)
    queue = [_queued(f"s{i}", rng.choice([16, 16, 64, 512])) for i in range(rng.randint(1, 120))]

    def placements(fast: bool) -> list[str | None]:
        placer, lanes = _network(seed)
        placing = PlacementRound(placer, lanes)
        backlog = sum(s.cost for s in queue)
        held, chosen = False, []
        for shard in queue:
            if fast:
                lane = placing.lane_for(shard, set(), backlog)
            else:  # one call of the rule per shard, every candidate looked at
                lane = (
                    None if held else placer.choose(shard, placer.candidates(shard, set()), backlog)
                )
                held = held or lane is None
            backlog -= shard.cost
            if lane is not None:
                lane.inflight[shard.shard_id] = shard  # as the dispatcher reserves the slot
            chosen.append(None if lane is None else lane.node_id)
        return chosen

    assert placements(fast=True) == placements(fast=False)
