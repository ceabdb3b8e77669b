"""PendingQueue: the order shards are offered to nodes in."""

from __future__ import annotations

from tokenweave.coordinator._runs import PendingQueue
from tokenweave.coordinator._views import QueuedShard


def _shard(job: str, index: int, cost: int = 10) -> QueuedShard:
    return QueuedShard(f"{job}-{index}", job, "embed", "m", "sha", cost, b"")


def _ids(queue: PendingQueue) -> list[str]:
    return [s.shard_id for s in queue]


def test_jobs_queue_in_arrival_order_and_returned_shards_go_first() -> None:
    queue = PendingQueue()
    queue.extend([_shard("a", 0), _shard("a", 1)])
    queue.extend([_shard("b", 0, cost=5)])
    assert _ids(queue) == ["a-0", "a-1", "b-0"]
    assert queue.backlog() == 25
    queue.remove("a-0")
    queue.to_front([_shard("a", 0)])  # a failed run comes back ahead of the rest
    assert _ids(queue) == ["a-0", "a-1", "b-0"]
    queue.to_front([_shard("b", 0, cost=5)])  # already queued: moved, not doubled
    assert _ids(queue) == ["b-0", "a-0", "a-1"]
    assert len(queue) == 3
    assert "a-1" in queue


def test_a_job_drops_whole_and_the_backlog_keeps_count() -> None:
    queue = PendingQueue()
    queue.extend([_shard("a", 0), _shard("b", 0, cost=7), _shard("a", 1)])
    queue.drop_job("a")
    assert _ids(queue) == ["b-0"]
    assert queue.backlog() == 7
    queue.to_front([_shard("b", 0, cost=7), _shard("c", 0, cost=3)])
    assert _ids(queue) == ["b-0", "c-0"]
    assert queue.backlog() == 10
    queue.discard("b-0")
    queue.discard("b-0")
    assert queue.backlog() == 3
