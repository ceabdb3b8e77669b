"""ShardQueue and ShardWorker without a coordinator: a recorded `send` and scripted runs."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from tokenweave import tensors
from tokenweave.errors import FailedPreconditionError
from tokenweave.models import windows_digest
from tokenweave.node._worker import ShardQueue, ShardWorker
from tokenweave.v1 import embed_pb2, nodes_pb2


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
        self.changed = asyncio.Event()

    async def wait_started(self, *shards: str) -> None:
        async with asyncio.timeout(5):
            while not set(shards) <= set(self.started):
                self.changed.clear()
                await self.changed.wait()

    async def __call__(
        self, assignment: nodes_pb2.ShardAssignment, *rest: Any
    ) -> nodes_pb2.LeaseRequest:
        self.started.append(assignment.shard_id)
        self.taken_back = rest[1] if len(rest) > 1 else None
        self.any_started.set()
        self.changed.set()
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


async def test_a_running_shard_sees_that_it_was_taken_back() -> None:
    lease, runs = Lease(), Runs(hold=["a"])
    queue = ShardQueue(runs, lease.send)
    queue.assign(_assignment("a"))
    queue.start()
    await runs.any_started.wait()
    assert runs.taken_back is not None
    assert not runs.taken_back()
    queue.cancel("a")
    assert runs.taken_back(), "a long run can stop within a step"
    runs.release["a"].set()
    await lease.wait_for(1)


async def test_drain_hands_back_the_queued_and_lets_the_running_one_finish() -> None:
    lease, runs = Lease(), Runs(hold=["a"])
    queue = ShardQueue(runs, lease.send)
    for shard in ("a", "b", "c"):
        queue.assign(_assignment(shard))
    queue.start()
    await runs.any_started.wait()
    assert queue.running == ("a",)

    draining = asyncio.create_task(queue.drain(grace_s=5))
    await lease.wait_for(1)
    assert lease.sent == ["release b,c"]
    queue.assign(_assignment("d"))  # pushed before the coordinator saw the release
    runs.release["a"].set()
    await draining
    assert runs.started == ["a"]
    assert lease.sent == ["release b,c", "result a", "release d"]
    assert queue.running == ()


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


async def test_concurrent_shards_run_side_by_side_and_answer_as_they_finish() -> None:
    lease, runs = Lease(), Runs(hold=["a", "b", "c", "d"])
    queue = ShardQueue(runs, lease.send, concurrency=3)
    for shard in ("a", "b", "c", "d"):
        queue.assign(_assignment(shard))
    queue.start()
    await runs.wait_started("a", "b", "c")
    await asyncio.sleep(0.05)
    assert queue.running == ("a", "b", "c")
    assert runs.started == ["a", "b", "c"], "the fourth waits for a free slot"
    runs.release["b"].set()
    await lease.wait_for(1)
    assert lease.sent == ["result b"]
    await runs.wait_started("d")
    for shard in ("a", "c", "d"):
        runs.release[shard].set()
    await lease.wait_for(4)
    assert sorted(lease.sent) == ["result a", "result b", "result c", "result d"]
    await queue.drain(grace_s=1)
    assert queue.running == ()


async def test_drain_hands_back_every_shard_still_running_after_the_grace_period() -> None:
    lease, runs = Lease(), Runs(hold=["a", "b", "c"])
    queue = ShardQueue(runs, lease.send, concurrency=2)
    for shard in ("a", "b", "c"):
        queue.assign(_assignment(shard))
    queue.start()
    await runs.wait_started("a", "b")
    await queue.drain(grace_s=0.05)
    assert lease.sent == ["release c", "release a,b"]
    assert queue.running == ()


async def test_a_failed_send_ends_a_concurrent_loop_too() -> None:
    async def broken(request: nodes_pb2.LeaseRequest) -> None:
        raise ConnectionError("stream gone")

    queue = ShardQueue(Runs(), broken, concurrency=4)
    queue.assign(_assignment("a"))
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(queue.start(), 5)


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        ShardQueue(Runs(), Lease().send, concurrency=0)


# -- ShardWorker.run ---------------------------------------------------------------------------


class FakeRunner:
    """A loaded model for the embedding workload: one constant unit row per window."""

    def __init__(self, sha256: str = "abc") -> None:
        self.model = SimpleNamespace(sha256=sha256)
        self.windows: list[list[int]] = []

    def embed(self, windows: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        self.windows = [w.tolist() for w in windows]
        return np.full((len(windows), 4), 0.5, dtype=np.float32)


class FakeResources:
    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner

    def model(self, name: str, sha256: str) -> FakeRunner:
        if name != "m" or sha256 != self.runner.model.sha256:
            raise FailedPreconditionError(f"refusing model {name} sha256 {sha256}")
        return self.runner

    def check(self, name: str, sha256: str) -> None:
        self.model(name, sha256)

    def read_document(self, source: Any, label: str) -> str:
        raise AssertionError("inline windows need no reads")


def _embed_assignment(
    shard_id: str, windows: Sequence[Sequence[int]], sha256: str = "abc", workload: str = "embed"
) -> nodes_pb2.ShardAssignment:
    task = embed_pb2.EmbedTask(
        windows=[embed_pb2.Window(token_ids=tensors.to_bytes(w, "uint32")) for w in windows]
    )
    return nodes_pb2.ShardAssignment(
        shard_id=shard_id,
        model="m",
        model_sha256=sha256,
        workload=workload,
        payload=task.SerializeToString(),
    )


async def test_run_reports_the_workloads_output_and_its_digest() -> None:
    runner = FakeRunner()
    worker = ShardWorker(FakeResources(runner), "CPUExecutionProvider")
    reply = await worker.run(_embed_assignment("s1", [[5, 6, 7], [8]]))
    result = reply.result
    assert result.shard_id == "s1"
    assert result.digest == hashlib.sha256(result.output).hexdigest()
    assert result.tokens == 3 + 2 + 1 + 2
    assert result.provider == "CPUExecutionProvider"
    output = embed_pb2.EmbedOutput.FromString(result.output)
    assert output.tokens_sha256.hex() == windows_digest([np.array([5, 6, 7]), np.array([8])])
    assert runner.windows == [[5, 6, 7], [8]]
    assert worker.shards_done == 1


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        (_embed_assignment("s1", [[1]], sha256="other"), "refusing model m sha256 other"),
        (_embed_assignment("s1", [[1]], workload="translate"), "unknown workload 'translate'"),
    ],
)
async def test_run_refuses_what_it_cannot_run(
    assignment: nodes_pb2.ShardAssignment, message: str
) -> None:
    runner = FakeRunner()
    reply = await ShardWorker(FakeResources(runner), "cpu").run(assignment)
    assert reply.WhichOneof("message") == "failure"
    assert message in reply.failure.error
    assert runner.windows == []


async def test_run_turns_an_exception_into_a_failure_naming_it() -> None:
    assignment = _embed_assignment("s1", [[1]])
    assignment.payload = b"\xff\xff not a task"
    reply = await ShardWorker(FakeResources(FakeRunner()), "cpu").run(assignment)
    assert reply.failure.shard_id == "s1"
    assert "not an EmbedTask" in reply.failure.error
