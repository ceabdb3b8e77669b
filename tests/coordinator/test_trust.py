"""Hostile nodes against the dispatcher and a real SQLite database: failing sybils, churners,
disputes with no third node, and a caught node's earlier results (see test_dispatch.py for the
parts)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.coordinator.test_dispatch import (
    Parts,
    _assignments,
    _job,
    _node,
    _output,
    _rows,
    catalog,
    make_parts,
)
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._db import LedgerRow, NodeRow
from tokenweave.coordinator._lanes import DetachReason, NodeLane
from tokenweave.coordinator._placer import WorkPolicy
from tokenweave.coordinator._quota import ClientQuota
from tokenweave.coordinator._referee import LocalRunner
from tokenweave.coordinator._views import Assignment, QueuedShard, ShardOutput
from tokenweave.errors import FailedPreconditionError, ResourceExhaustedError
from tokenweave.types import JobState

__all__ = ["catalog", "make_parts"]  # fixtures shared with test_dispatch

MODEL = "all-minilm-l6-v2"


def _true_output(runner: LocalRunner, assignment: Assignment) -> ShardOutput:
    """The real model's output for the assignment, as an honest node computes it."""
    shard = QueuedShard(
        assignment.shard_id, assignment.job_id, "embed", MODEL, assignment.model_sha256, 0, b""
    )
    data = runner.run(shard, assignment.payload)
    return ShardOutput(assignment.shard_id, data, 10, 0.1, hashlib.sha256(data).hexdigest(), "cpu")


async def test_fresh_keys_that_fail_every_shard_do_not_fail_the_job(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    """Three sybils claiming top speed fail whatever they get: each failure costs them
    reputation and a rest, counts less towards giving the shard up (they are not vetted), and
    the job finishes on the honest node."""
    dispatcher, registry, store = await make_parts(
        WorkPolicy(verify_fraction=0.0), vetting=10, rest_s=600.0, max_attempts=2
    )
    sybils = [await _node(registry, dispatcher, catalog, tokens_per_second=9e9) for _ in range(3)]
    job = await dispatcher.submit(_job())
    for sybil in sybils:
        for assignment in _assignments(sybil):
            await dispatcher.fail(sybil, assignment.shard_id, "no")
    assert (await dispatcher.job(job.job_id)).state is JobState.RUNNING
    honest = await _node(registry, dispatcher, catalog)
    while batch := _assignments(honest):
        for assignment in batch:
            await dispatcher.complete(honest, _output(assignment))
    assert (await dispatcher.job(job.job_id)).state is JobState.SUCCEEDED
    nodes = {n.node_id: n for n in await _rows(store, NodeRow)}
    for sybil in sybils:
        assert nodes[sybil.node_id].shards_failed > 0
        assert nodes[sybil.node_id].reputation < 1.0
        assert dispatcher._standing.resting(sybil.node_id)


async def test_a_node_that_takes_work_and_leaves_rests_longer_each_time(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=0.0), rest_s=0.2)
    job = await dispatcher.submit(_job())
    churner = await _node(registry, dispatcher, catalog)
    assert _assignments(churner)
    await dispatcher.detach(churner, DetachReason.STREAM_CLOSED)
    churner = await _node(registry, dispatcher, catalog, account=None)
    standing = dispatcher._standing
    again = await _node(registry, dispatcher, catalog)  # an honest node takes the work meanwhile
    assert _assignments(again)
    nodes = {n.node_id: n for n in await _rows(store, NodeRow)}
    assert sum(n.shards_abandoned for n in nodes.values()) > 0
    assert sum(standing.resting(n) for n in nodes) == 1
    assert (await dispatcher.job(job.job_id)).state is JobState.RUNNING


async def test_strikes_double_the_rest_and_a_result_forgives_them(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _ = await make_parts(WorkPolicy(verify_fraction=0.0), rest_s=0.05)
    standing = dispatcher._standing
    lane = await _node(registry, dispatcher, catalog)
    assert await standing.record_abandoned(lane.node_id, 1) == pytest.approx(0.05)
    assert await standing.record_abandoned(lane.node_id, 1) == pytest.approx(0.1)
    assert standing.resting(lane.node_id)
    await dispatcher.submit(_job())
    assert not _assignments(lane), "a resting node gets no work"
    await asyncio.sleep(0.15)
    await dispatcher.check_stragglers()  # the periodic tick wakes the queue when a rest ends
    batch = _assignments(lane)
    assert batch
    await dispatcher.complete(lane, _output(batch[0]))
    assert await standing.record_abandoned(lane.node_id, 1) == pytest.approx(0.05), "forgiven"


async def _dispute(
    parts: Parts, catalog: ModelCatalog, runner: LocalRunner
) -> tuple[JobState, str, NodeLane, NodeLane]:
    """Two nodes, every shard verified: one honest (the real model), one returning random
    vectors, answering whatever they are given until the job ends. Returns its state, its id
    and the two lanes."""
    dispatcher, registry, _ = parts
    honest = await _node(registry, dispatcher, catalog)
    liar = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    for _ in range(600):
        for lane in (honest, liar):
            for assignment in _assignments(lane):
                if lane is honest:
                    await dispatcher.complete(lane, _true_output(runner, assignment))
                else:  # it may have been cut off meanwhile
                    with contextlib.suppress(FailedPreconditionError):
                        await dispatcher.complete(lane, _output(assignment, seed=7))
        state = (await dispatcher.job(job.job_id)).state
        if state.finished:
            return state, job.job_id, honest, liar
        await asyncio.sleep(0.05)
        await dispatcher.check_stragglers()
    raise AssertionError("the job never finished")


async def test_the_referee_decides_a_dispute_on_a_two_node_network(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog, model_cache: Path
) -> None:
    runner = LocalRunner(model_cache, model_cache / "registered")
    parts = await make_parts(WorkPolicy(verify_fraction=1.0), referee=runner)
    state, _, honest, liar = await _dispute(parts, catalog, runner)
    assert state is JobState.SUCCEEDED
    ledger = await _rows(parts[2], LedgerRow)
    assert {r.address for r in ledger if not r.withheld} == {honest.node_id}
    nodes = {n.node_id: n for n in await _rows(parts[2], NodeRow)}
    assert nodes[liar.node_id].verifications_failed > 0
    assert nodes[honest.node_id].verifications_failed == 0


async def test_a_dispute_nobody_can_decide_fails_the_job_in_bounded_time(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog, model_cache: Path
) -> None:
    parts = await make_parts(WorkPolicy(verify_fraction=1.0, dispute_wait_s=0.2))
    state, job_id, _, liar = await _dispute(
        parts, catalog, LocalRunner(model_cache, model_cache / "registered")
    )
    assert state is JobState.FAILED
    view = await parts[0].job(job_id)
    assert "no other node decided within 0.2 s" in view.error
    ledger = await _rows(parts[2], LedgerRow)
    assert liar.node_id not in {r.address for r in ledger}, "nothing paid for a disputed shard"


async def test_a_caught_nodes_unchecked_results_run_again(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    """A node returns forged outputs while unchecked; once a verification catches it, each
    result it returned unchecked in the unfinished job runs again on another node, and the
    job's output is the honest one."""
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=0.0))
    forger = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    forged = _assignments(forger)
    await dispatcher.complete(forger, _output(forged[0], seed=3))  # accepted: nobody checks
    assert (await dispatcher.job(job.job_id)).shards_done == 1
    honest = [await _node(registry, dispatcher, catalog) for _ in range(2)]
    # Vetting starts (as for a node just caught): every result from now on is checked, even of
    # shards leased unchecked, and the forger's next one is caught.
    dispatcher._standing.vetting_results = 10
    await dispatcher.complete(forger, _output(forged[1], seed=4))
    progress = True
    while progress:
        progress = False
        for lane in (*honest, forger):
            for assignment in _assignments(lane):
                progress = True
                seed = 5 if lane is forger else -1
                with contextlib.suppress(FailedPreconditionError):  # it may be cut off
                    await dispatcher.complete(lane, _output(assignment, seed=seed))
    view = await dispatcher.job(job.job_id)
    assert view.state is JobState.SUCCEEDED
    ledger = await _rows(store, LedgerRow)
    paid = {r.shard_id: r.address for r in ledger if not r.withheld}
    assert paid[forged[0].shard_id] in {h.node_id for h in honest}, "it ran again"
    assert forger.node_id not in paid.values()
    assert len(paid) == view.shards_total


async def test_each_client_is_held_to_its_quota(
    make_parts: Callable[..., Awaitable[Parts]],
) -> None:
    dispatcher, _, _ = await make_parts(
        WorkPolicy(verify_fraction=0.0),
        quota=ClientQuota(max_concurrent_jobs=1, max_tokens_per_job=200, max_tokens_per_hour=200),
    )
    alice = dataclasses.replace(_job(), owner="alice")
    bob = dataclasses.replace(_job(), owner="bob")
    first = await dispatcher.submit(alice)
    with pytest.raises(ResourceExhaustedError, match="1 jobs queued or running; the quota is 1"):
        await dispatcher.submit(alice)
    await dispatcher.submit(bob)  # another client has its own quota
    await dispatcher.cancel(first.job_id)
    with pytest.raises(ResourceExhaustedError, match="in the last hour"):
        await dispatcher.submit(alice)  # the cancelled job's tokens still count this hour
    big = dataclasses.replace(alice, owner="carol", documents=alice.documents * 2)
    with pytest.raises(ResourceExhaustedError, match="the quota is 200 a job"):
        await dispatcher.submit(big)
