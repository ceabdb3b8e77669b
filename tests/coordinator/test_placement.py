import pytest

from tokenweave.coordinator import NodeLoad, choose_node
from tokenweave.coordinator._placement import peer_fetch_seconds


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
