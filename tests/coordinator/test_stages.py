"""Staged jobs (map, then reduce) in the dispatcher with a real SQLite database: the next stage
is planned from the accepted outputs once every task before it is done, survives nothing less,
and is withdrawn and planned again when a node that fed it is caught."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import Awaitable, Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pytest

from tests.coordinator.test_dispatch import Parts, _assignments, _node, catalog, make_parts
from tokenweave import workloads
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._db import LedgerRow, ShardRow
from tokenweave.coordinator._lanes import NodeLane
from tokenweave.coordinator._placer import WorkPolicy
from tokenweave.coordinator._views import Assignment, JobRequest, ShardOutput
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError
from tokenweave.types import JobState
from tokenweave.workloads import (
    DocumentInput,
    DocumentPlan,
    JobPlan,
    NodeRuntime,
    PlanContext,
    TaskPlan,
    TaskRun,
    Workload,
)

from .test_trust import _rows

__all__ = ["catalog", "make_parts"]

MODEL = "all-minilm-l6-v2"


class Tally(Workload):
    """Stage 0: each document's text is a task (a node returns it upper-cased); stage 1: one
    task joins the stage-0 outputs. The result is the joined text."""

    name = "tally-test"

    def plan(
        self,
        model: str,
        documents: Sequence[DocumentInput],
        options: Mapping[str, str],
        context: PlanContext,
    ) -> JobPlan:
        tasks = tuple(TaskPlan(10, d.text.encode(), b"0") for d in documents)
        docs = tuple(DocumentPlan(d.name, 10) for d in documents)
        return JobPlan(options={}, documents=docs, tasks=tasks, items=len(tasks))

    def run(self, model: str, model_sha256: str, payload: bytes, runtime: NodeRuntime) -> TaskRun:
        raise AssertionError("the test completes tasks itself")

    def check(self, detail: bytes, output: bytes) -> None:
        if not output:
            raise InvalidArgumentError("empty")

    def compare(self, detail: bytes, a: bytes, b: bytes) -> float:
        return 1.0 if a == b else 0.0

    def next_stage(
        self,
        documents: Sequence[DocumentPlan],
        tasks: Sequence[tuple[bytes, bytes]],
        context: PlanContext,
    ) -> tuple[TaskPlan, ...]:
        if any(detail == b"1" for detail, _ in tasks):
            return ()
        return (TaskPlan(5, b"+".join(output for _, output in tasks), b"1"),)

    def merge(
        self, documents: Sequence[DocumentPlan], tasks: Sequence[tuple[bytes, bytes]]
    ) -> list[dict[str, npt.NDArray[np.generic]]]:
        joined = np.frombuffer(tasks[-1][1], dtype=np.uint8).copy()
        return [{"joined": joined} for _ in documents]


class Endless(Tally):
    """A workload whose every stage plans another."""

    name = "endless-test"

    def next_stage(
        self,
        documents: Sequence[DocumentPlan],
        tasks: Sequence[tuple[bytes, bytes]],
        context: PlanContext,
    ) -> tuple[TaskPlan, ...]:
        return (TaskPlan(5, b"again", b"1"),)


workloads.register(Tally())
workloads.register(Endless())


def honest(assignment: Assignment) -> ShardOutput:
    data = assignment.payload.upper()
    return ShardOutput(assignment.shard_id, data, 10, 0.1, hashlib.sha256(data).hexdigest(), "cpu")


def forged(assignment: Assignment) -> ShardOutput:
    data = b"forged"
    return ShardOutput(assignment.shard_id, data, 10, 0.1, hashlib.sha256(data).hexdigest(), "cpu")


async def node(parts: Parts, catalog: ModelCatalog) -> NodeLane:
    dispatcher, registry, _ = parts
    return await _node(registry, dispatcher, catalog, workloads=("tally-test", "endless-test"))


def request() -> JobRequest:
    docs = tuple(DocumentInput(f"d{i}", f"part{i}") for i in range(3))
    return JobRequest("tally-test", MODEL, docs, {})


async def drain(parts: Parts, lanes: Sequence[NodeLane], liar: NodeLane | None = None) -> None:
    """Complete every assignment the lanes hold until none is left."""
    progress = True
    while progress:
        progress = False
        for lane in lanes:
            for assignment in _assignments(lane):
                progress = True
                output = forged(assignment) if lane is liar else honest(assignment)
                with contextlib.suppress(FailedPreconditionError):  # it may be cut off
                    await parts[0].complete(lane, output)


async def test_the_next_stage_is_planned_from_the_accepted_outputs(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    parts = await make_parts(WorkPolicy(verify_fraction=0.0))
    dispatcher, _, store = parts
    job = await dispatcher.submit(request())
    assert job.shards_total == 3
    lane = await node(parts, catalog)
    done = 0
    while done < 3:
        for assignment in _assignments(lane):
            assert (await dispatcher.job(job.job_id)).shards_total == 3, "not before stage 0 ends"
            await dispatcher.complete(lane, honest(assignment))
            done += 1
    view = await dispatcher.job(job.job_id)
    assert view.shards_total == 4
    assert view.state is JobState.RUNNING
    [reduce] = _assignments(lane)
    assert reduce.payload == b"PART0+PART1+PART2"
    await dispatcher.complete(lane, honest(reduce))
    view = await dispatcher.job(job.job_id)
    assert view.state is JobState.SUCCEEDED
    assert view.shards_done == view.shards_total == 4
    [result, *_] = [r async for r in store.results(job.job_id)]
    assert bytes(result.outputs["joined"]) == b"PART0+PART1+PART2"
    stages = {r.shard_id: r.stage for r in await _rows(store, ShardRow)}
    assert sorted(stages.values()) == [0, 0, 0, 1]
    assert len(await _rows(store, LedgerRow)) == 4, "every stage's work is paid"


async def test_a_stage_fed_by_a_caught_node_is_withdrawn_and_planned_again(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    """A forger's unchecked map output reaches the reduce stage; once it is caught, its map
    task runs again, the reduce built on it is withdrawn, and the answer is the honest one."""
    parts = await make_parts(WorkPolicy(verify_fraction=0.0))
    dispatcher, _, store = parts
    forger = await node(parts, catalog)
    job = await dispatcher.submit(request())
    first = True
    while (await dispatcher.job(job.job_id)).shards_total == 3:
        for assignment in _assignments(forger):
            await dispatcher.complete(forger, forged(assignment) if first else honest(assignment))
            first = False
    [reduce] = _assignments(forger)
    assert reduce.payload.startswith(b"forged+"), "the reduce stage is built on the forgery"
    # Vetting starts: the forger's next result is checked against two honest nodes and caught.
    dispatcher._standing.vetting_results = 10
    others = [await node(parts, catalog) for _ in range(2)]
    await dispatcher.complete(forger, forged(reduce))
    await drain(parts, [forger, *others], liar=forger)
    view = await dispatcher.job(job.job_id)
    assert view.state is JobState.SUCCEEDED
    [result, *_] = [r async for r in store.results(job.job_id)]
    assert bytes(result.outputs["joined"]) == b"PART0+PART1+PART2"
    rows = await _rows(store, ShardRow)
    assert view.shards_total == len([r for r in rows if r.state == "DONE"])
    assert [r.stage for r in rows if r.state == "CANCELLED"] == [1], "the first reduce withdrawn"


async def test_a_job_whose_stages_never_end_fails(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    parts = await make_parts(WorkPolicy(verify_fraction=0.0))
    dispatcher = parts[0]
    job = await dispatcher.submit(dataclasses.replace(request(), workload="endless-test"))
    await drain(parts, [await node(parts, catalog)])
    view = await dispatcher.job(job.job_id)
    assert view.state is JobState.FAILED
    assert "planned more than 32 stages" in view.error
    assert view.shards_total == 3 + 31


@pytest.fixture(autouse=True)
def _registered() -> None:
    assert workloads.get("tally-test")
