"""The dispatcher against a real SQLite database: shards are never lost or counted twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._db import open_database
from tokenweave.coordinator._dispatch import Dispatcher, NodeLane
from tokenweave.coordinator._jobs import JobLimits, JobStore
from tokenweave.coordinator._metering import PriceList
from tokenweave.coordinator._nodes import NodeRegistry
from tokenweave.coordinator._views import (
    Assignment,
    DocumentInput,
    JobRequest,
    JobState,
    ModelOffer,
    NodeRegistration,
    ShardAck,
    ShardOutput,
)
from tokenweave.errors import FailedPreconditionError
from tokenweave.models import PreparedModel, windows_digest

MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def catalog(model_cache: Path, prepared: PreparedModel) -> ModelCatalog:
    return ModelCatalog.prepare([MODEL], model_cache)


@pytest.fixture
async def parts(
    tmp_path: Path, catalog: ModelCatalog
) -> AsyncIterator[tuple[Dispatcher, NodeRegistry, JobStore]]:
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    store = JobStore(
        sessions,
        catalog,
        JobLimits(10**6, 100, default_overlap=2, windows_per_shard=2),
        PriceList.parse([f"{MODEL}=1"]),
    )
    registry = NodeRegistry(sessions, coordinator_id="test", expiry_seconds=60)
    yield Dispatcher(store, registry, catalog, max_attempts=2), registry, store
    await engine.dispose()


async def _node(registry: NodeRegistry, dispatcher: Dispatcher, catalog: ModelCatalog) -> NodeLane:
    account = Account.create()
    message, nonce = registry.challenge(account.address)
    signature = bytes(Account.sign_message(encode_defunct(text=message), account.key).signature)
    node_id, token = await registry.register(
        NodeRegistration(
            address=account.address,
            nonce=nonce,
            signature=signature,
            hardware={},
            models=(ModelOffer(MODEL, catalog.get(MODEL).sha256, 1000.0),),
            max_inflight_shards=2,
            version="test",
        )
    )
    return await dispatcher.attach(node_id, token)


def _assignments(lane: NodeLane) -> list[Assignment]:
    out = []
    while not lane.outbox.empty():
        message = lane.outbox.get_nowait()
        if isinstance(message, Assignment):
            out.append(message)
    return out


def _output(assignment: Assignment, rows: int | None = None) -> ShardOutput:
    n = len(assignment.windows) if rows is None else rows
    data = np.full((n, 384), 1 / np.sqrt(384), dtype="<f4").tobytes()
    return ShardOutput(
        assignment.shard_id,
        data,
        n,
        384,
        10,
        0.1,
        hashlib.sha256(data).hexdigest(),
        "cpu",
        tokens_digest=windows_digest(assignment.windows),
    )


def _job() -> JobRequest:
    text = " ".join(f"word{i}" for i in range(60))
    return JobRequest(
        MODEL, (DocumentInput("a", text), DocumentInput("b", "short")), window=16, overlap=2
    )


async def test_a_job_runs_to_the_end_through_detach_and_reattach(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _store = parts
    job = await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, second = _assignments(lane)
    await dispatcher.complete(lane, _output(first))
    # The node goes away holding `second` (and whatever the completion pumped to it).
    await dispatcher.detach(lane, reason="test")
    lane = await _node(registry, dispatcher, catalog)
    seen = {first.shard_id}
    while True:
        batch = _assignments(lane)
        if not batch:
            break
        for assignment in batch:
            assert assignment.shard_id not in seen, "a finished shard was leased again"
            seen.add(assignment.shard_id)
            await dispatcher.complete(lane, _output(assignment))
    view = await dispatcher.job(job.job_id)
    assert view.state is JobState.SUCCEEDED
    assert view.shards_done == view.shards_total == len(seen)
    assert second.shard_id in seen
    results = [d async for d in dispatcher.results(job.job_id)]
    assert [d.name for d in results] == ["a", "b"]
    assert sum(len(d.windows) for d in results) == view.windows


async def test_the_database_refuses_to_release_or_relet_a_finished_shard(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = parts
    await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, _ = _assignments(lane)
    await dispatcher.complete(lane, _output(first))
    assert await store.release(lane.node_id, [first.shard_id]) == set()
    assert await store.mark_leased(first.shard_id, lane.node_id) is False


@pytest.mark.parametrize("yields", range(0, 24, 2))
async def test_a_completion_cancelled_at_any_point_loses_nothing(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog, yields: int
) -> None:
    """The node hangs up while its result is being applied: the shard ends either done and out
    of the queue, or not done and back in it - never done and queued to run again."""
    dispatcher, registry, _store = parts
    job = await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, _ = _assignments(lane)
    task = asyncio.create_task(dispatcher.complete(lane, _output(first)))
    for _ in range(yields):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await dispatcher.detach(lane, reason="hung up")
    done = (await dispatcher.job(job.job_id)).shards_done == 1
    queued = first.shard_id in dispatcher._pending
    assert done != queued


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (
            lambda out: dataclasses.replace(out, rows=1, embeddings=out.embeddings[: 384 * 4]),
            "expected 2x384",
        ),
        (lambda out: dataclasses.replace(out, digest="0" * 64), "digest does not match"),
        (
            lambda out: dataclasses.replace(out, tokens_digest="0" * 64),
            "ran other tokens than the shard's",
        ),
    ],
)
async def test_a_bad_result_is_refused_and_the_shard_runs_again(
    parts: tuple[Dispatcher, NodeRegistry, JobStore],
    catalog: ModelCatalog,
    bad: Callable[[ShardOutput], ShardOutput],
    reason: str,
) -> None:
    dispatcher, registry, _store = parts
    job = await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, _ = _assignments(lane)
    await dispatcher.complete(lane, bad(_output(first)))
    messages = [lane.outbox.get_nowait() for _ in range(lane.outbox.qsize())]
    acks = [m for m in messages if isinstance(m, ShardAck)]
    assert [(a.shard_id, a.accepted) for a in acks] == [(first.shard_id, False)]
    assert reason in acks[0].reason
    assert (await dispatcher.job(job.job_id)).shards_done == 0
    again = [m for m in messages if isinstance(m, Assignment) and m.shard_id == first.shard_id]
    assert again, "the shard is leased again"
    await dispatcher.complete(lane, _output(first))
    assert (await dispatcher.job(job.job_id)).shards_done == 1


async def test_a_result_for_a_shard_never_held_is_an_error(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _store = parts
    await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    with pytest.raises(FailedPreconditionError, match="does not hold shard nope"):
        await dispatcher.complete(lane, ShardOutput("nope", b"", 0, 384, 0, 0.0, "", ""))


async def test_a_shard_that_keeps_failing_fails_its_job(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _store = parts
    job = await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, _ = _assignments(lane)
    await dispatcher.fail(lane, first.shard_id, "boom")
    again = [a for a in _assignments(lane) if a.shard_id == first.shard_id]
    assert again, "a failed shard is retried"
    await dispatcher.fail(lane, first.shard_id, "boom twice")
    view = await dispatcher.job(job.job_id)
    assert view.state is JobState.FAILED
    assert "failed 2 times; last error: boom twice" in view.error


async def test_shards_handed_back_go_to_other_nodes(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _store = parts
    await dispatcher.submit(_job())
    leaving = await _node(registry, dispatcher, catalog)
    first, second = _assignments(leaving)
    await dispatcher.hand_back(leaving, [first.shard_id, second.shard_id])
    assert _assignments(leaving) == [], "a node that hands work back gets no more"
    staying = await _node(registry, dispatcher, catalog)
    assert {a.shard_id for a in _assignments(staying)} == {first.shard_id, second.shard_id}
