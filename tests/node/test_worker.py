"""ShardQueue and ShardWorker without a coordinator: a recorded `send` and scripted runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tokenweave.models import windows_digest
from tokenweave.node import ShardRun
from tokenweave.node._worker import ShardQueue, ShardWorker
from tokenweave.v1 import nodes_pb2


def _assignment(shard_id: str, model: str = "m", sha256: str = "abc") -> nodes_pb2.ShardAssignment:
    return nodes_pb2.ShardAssignment(shard_id=shard_id, model=model, model_sha256=sha256)


def _result(shard_id: str) -> nodes_pb2.LeaseRequest:
    return nodes_pb2.LeaseRequest(result=nodes_pb2.ShardResult(shard_id=shard_id))


class Lease:
    """What the queue sent, in order, as short strings."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.changed = asyncio.Event()

    async def send(self, request: nodes_pb2.LeaseRequest) -> None:
        kind = request.WhichOneof("message")
        if kind == "release":
            self.sent.append("release " + ",".join(request.release.shard_ids))
        elif kind == "result":
            self.sent.append("result " + request.result.shard_id)
        else:
            self.sent.append(str(kind))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.sent) < count:
                self.changed.clear()
                await self.changed.wait()


class Runs:
    """A `RunShard` whose shards finish when the test says so (or at once)."""

    def __init__(self, hold: Sequence[str] = ()) -> None:
        self.started: list[str] = []
        self.release = {shard: asyncio.Event() for shard in hold}
        self.any_started = asyncio.Event()

    async def __call__(self, assignment: nodes_pb2.ShardAssignment) -> nodes_pb2.LeaseRequest:
        self.started.append(assignment.shard_id)
        self.any_started.set()
        gate = self.release.get(assignment.shard_id)
        if gate is not None:
            await gate.wait()
        return _result(assignment.shard_id)


async def test_cancelled_assignments_are_skipped_and_the_rest_run_in_order() -> None:
    lease, runs = Lease(), Runs()
    queue = ShardQueue(runs, lease.send)
    for shard in ("a", "b", "c"):
        queue.assign(_assignment(shard))
    queue.cancel("b")
    queue.start()
    await lease.wait_for(2)
    assert runs.started == ["a", "c"]
    assert lease.sent == ["result a", "result c"]
    await queue.drain(grace_s=1)
    assert lease.sent == ["result a", "result c"]  # nothing left to hand back


async def test_drain_hands_back_the_queued_and_lets_the_running_one_finish() -> None:
    lease, runs = Lease(), Runs(hold=["a"])
    queue = ShardQueue(runs, lease.send)
    for shard in ("a", "b", "c"):
        queue.assign(_assignment(shard))
    queue.start()
    await runs.any_started.wait()
    assert queue.running == "a"

    draining = asyncio.create_task(queue.drain(grace_s=5))
    await lease.wait_for(1)
    assert lease.sent == ["release b,c"]
    queue.assign(_assignment("d"))  # pushed before the coordinator saw the release
    runs.release["a"].set()
    await draining
    assert runs.started == ["a"]
    assert lease.sent == ["release b,c", "result a", "release d"]
    assert queue.running is None


async def test_a_shard_still_running_after_the_grace_period_is_handed_back() -> None:
    lease, runs = Lease(), Runs(hold=["a"])
    queue = ShardQueue(runs, lease.send)
    queue.assign(_assignment("a"))
    queue.assign(_assignment("b"))
    queue.start()
    await runs.any_started.wait()
    await queue.drain(grace_s=0.05)
    assert lease.sent == ["release b", "release a"]


async def test_a_failed_send_ends_the_loop_with_its_error() -> None:
    async def broken(request: nodes_pb2.LeaseRequest) -> None:
        raise ConnectionError("stream gone")

    queue = ShardQueue(Runs(), broken)
    queue.assign(_assignment("a"))
    with pytest.raises(ConnectionError):
        await queue.start()


# -- ShardWorker.run ---------------------------------------------------------------------------


class FakeRunner:
    def __init__(self, sha256: str = "abc") -> None:
        self.model = SimpleNamespace(sha256=sha256)
        self.tokenizer = object()
        self.windows: list[list[int]] = []

    def run(self, windows: Sequence[npt.NDArray[np.int64]]) -> ShardRun:
        self.windows = [w.tolist() for w in windows]
        return ShardRun(
            embeddings=b"\x00" * 8 * len(windows),
            rows=len(windows),
            dim=2,
            tokens=sum(len(w) + 2 for w in windows),
            wall_seconds=0.5,
            digest="d" * 64,
            provider="FakeProvider",
        )


class FakeWindows:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, Any, str]] = []

    def read(
        self, assignment: nodes_pb2.ShardAssignment, tokenizer: Any, model_sha256: str
    ) -> list[npt.NDArray[np.int64]]:
        self.calls.append((assignment.shard_id, tokenizer, model_sha256))
        if self.error is not None:
            raise self.error
        return [np.array([5, 6, 7], dtype=np.int64), np.array([8], dtype=np.int64)]


async def test_run_reports_the_result_of_the_windows_it_read() -> None:
    runner, windows = FakeRunner(), FakeWindows()
    worker = ShardWorker({"m": runner}, windows)  # type: ignore[dict-item]
    answer = await worker.run(_assignment("s1"))
    assert answer.WhichOneof("message") == "result"
    result = answer.result
    assert (result.shard_id, result.rows, result.dim, result.tokens) == ("s1", 2, 2, 8)
    assert result.provider == "FakeProvider"
    assert result.tokens_digest == windows_digest([np.array([5, 6, 7]), np.array([8])])
    assert windows.calls == [("s1", runner.tokenizer, "abc")]
    assert runner.windows == [[5, 6, 7], [8]]
    assert worker.shards_done == 1


@pytest.mark.parametrize(
    ("model", "sha256", "have"), [("m", "other", "abc"), ("nope", "abc", "no such model")]
)
async def test_run_refuses_a_model_it_does_not_hold_exactly(
    model: str, sha256: str, have: str
) -> None:
    windows = FakeWindows()
    worker = ShardWorker({"m": FakeRunner()}, windows)  # type: ignore[dict-item]
    answer = await worker.run(_assignment("s1", model, sha256))
    assert answer.WhichOneof("message") == "failure"
    assert answer.failure.shard_id == "s1"
    assert f"this node has {have}" in answer.failure.error
    assert windows.calls == []
    assert worker.shards_done == 0


async def test_run_turns_an_exception_into_a_failure_naming_it() -> None:
    worker = ShardWorker(
        {"m": FakeRunner()},  # type: ignore[dict-item]
        FakeWindows(error=KeyError("document 3")),
    )
    answer = await worker.run(_assignment("s1"))
    assert answer.WhichOneof("message") == "failure"
    assert answer.failure.error == "KeyError: 'document 3'"
    assert worker.shards_done == 0
