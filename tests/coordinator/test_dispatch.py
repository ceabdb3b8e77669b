"""The dispatcher against a real SQLite database: shards are never lost or counted twice."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tokenweave import tensors, workloads
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._claims import Instances
from tokenweave.coordinator._db import (
    JobRow,
    LedgerRow,
    NodeRow,
    VerificationRow,
    open_database,
)
from tokenweave.coordinator._dispatch import Dispatcher
from tokenweave.coordinator._events import JobEvents
from tokenweave.coordinator._jobs import JobLimits, JobStore
from tokenweave.coordinator._lanes import DetachReason, Lanes, NodeLane
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._metering import PriceList
from tokenweave.coordinator._nodes import NodeRegistry
from tokenweave.coordinator._placer import WorkPolicy
from tokenweave.coordinator._quota import ClientQuota
from tokenweave.coordinator._referee import LocalRunner
from tokenweave.coordinator._standing import Standing
from tokenweave.coordinator._views import (
    Assignment,
    AuditChallenge,
    JobRequest,
    NodeRegistration,
    ShardAck,
    ShardCancel,
    ShardOutput,
)
from tokenweave.errors import (
    FailedPreconditionError,
    PermissionDeniedError,
    TokenweaveError,
    UnauthenticatedError,
)
from tokenweave.models import PreparedModel, windows_digest
from tokenweave.types import Hardware, JobState, ModelOffer
from tokenweave.v1 import embed_pb2
from tokenweave.workloads import DocumentInput, EmbedWorkload, JobPlan

MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def catalog(model_cache: Path, prepared: PreparedModel) -> ModelCatalog:
    return ModelCatalog.prepare([MODEL], model_cache)


Parts = tuple[Dispatcher, NodeRegistry, JobStore]


def _tree(leaves: object) -> tuple[bytes, Callable[[str], list[bytes]]]:
    return b"\0" * 32, lambda address: []


@pytest.fixture
async def make_parts(
    tmp_path: Path, catalog: ModelCatalog
) -> AsyncIterator[Callable[..., Awaitable[Parts]]]:
    engines: list[AsyncEngine] = []

    async def make(
        policy: WorkPolicy,
        vetting: int = 0,
        rest_s: float = 0.0,
        referee: LocalRunner | None = None,
        max_attempts: int = 2,
        quota: ClientQuota | None = None,
    ) -> Parts:
        engine, sessions = await open_database(
            f"sqlite+aiosqlite:///{tmp_path / f'c{len(engines)}.db'}"
        )
        engines.append(engine)
        ledger = RewardLedger(
            sessions, _tree, PriceList.parse([f"{MODEL}=1", "smollm2-135m-instruct=0.5/2"])
        )
        standing = Standing(
            sessions, ledger, min_reputation=0.2, vetting_results=vetting, rest_base_s=rest_s
        )
        store = JobStore(
            sessions,
            catalog,
            JobLimits(
                10**6,
                100,
                items_per_task=2,
                option_defaults={"overlap": "2"},
                quota=quota or ClientQuota(),
            ),
            ledger,
            owner="0123456789abcdef",
        )
        registry = NodeRegistry(
            sessions, coordinator_id="test", expiry_seconds=60, standing=standing
        )
        dispatcher = Dispatcher(
            store,
            registry,
            standing,
            Lanes(),
            JobEvents(),
            Instances(sessions, store.owner, ttl_s=60),
            max_attempts=max_attempts,
            policy=policy,
            referee=referee,
        )
        return dispatcher, registry, store

    yield make
    for engine in engines:
        await engine.dispose()


@pytest.fixture
async def parts(make_parts: Callable[..., Awaitable[Parts]]) -> Parts:
    """Without verification: every shard runs once."""
    return await make_parts(WorkPolicy(verify_fraction=0.0))


async def _node(
    registry: NodeRegistry,
    dispatcher: Dispatcher,
    catalog: ModelCatalog,
    account: LocalAccount | None = None,
    tokens_per_second: float = 1000.0,
    workloads: tuple[str, ...] = ("embed",),
    model: str = MODEL,
) -> NodeLane:
    account = account or Account.create()
    message, nonce = registry.challenge(account.address)
    signature = bytes(Account.sign_message(encode_defunct(text=message), account.key).signature)
    node_id, token = await registry.register(
        NodeRegistration(
            address=account.address,
            nonce=nonce,
            signature=signature,
            hardware=Hardware(),
            models=(ModelOffer(model, catalog.get(model).sha256, tokens_per_second),),
            max_inflight_shards=2,
            version="test",
            workloads=workloads,
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


def _windows(assignment: Assignment) -> list[np.ndarray]:
    task = embed_pb2.EmbedTask.FromString(assignment.payload)
    return [tensors.from_bytes(w.token_ids, "uint32") for w in task.windows]


def _output(
    assignment: Assignment,
    rows: int | None = None,
    seed: int = -1,
    tokens_sha256: bytes | None = None,
    digest: str | None = None,
) -> ShardOutput:
    """An output with unit rows: the same for every node, or (seed >= 0) a different one."""
    windows = _windows(assignment)
    n = len(windows) if rows is None else rows
    matrix = np.full((n, 384), 1 / np.sqrt(384), dtype="<f4")
    if seed >= 0:
        matrix = np.random.default_rng(seed).normal(size=(n, 384)).astype("<f4")
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    data = embed_pb2.EmbedOutput(
        embeddings=tensors.to_proto(matrix, "float32"),
        tokens_sha256=tokens_sha256 or bytes.fromhex(windows_digest(windows)),
    ).SerializeToString()
    return ShardOutput(
        assignment.shard_id, data, 10, 0.1, digest or hashlib.sha256(data).hexdigest(), "cpu"
    )


def _job() -> JobRequest:
    text = " ".join(f"word{i}" for i in range(60))
    return JobRequest(
        "embed",
        MODEL,
        (DocumentInput("a", text), DocumentInput("b", "short")),
        {"window": "16", "overlap": "2"},
    )


async def test_a_job_runs_to_the_end_through_detach_and_reattach(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = parts
    job = await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, second = _assignments(lane)
    await dispatcher.complete(lane, _output(first))
    # The node goes away holding `second` (and whatever the completion pumped to it).
    await dispatcher.detach(lane, DetachReason.STREAM_CLOSED)
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
    results = [d async for d in store.results(job.job_id)]
    assert [d.name for d in results] == ["a", "b"]
    assert [d.name async for d in store.results(job.job_id, page=1)] == ["a", "b"]
    assert sum(len(d.outputs["spans"]) for d in results) == view.items


async def test_the_database_refuses_to_release_or_relet_a_finished_shard(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = parts
    await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, _ = _assignments(lane)
    await dispatcher.complete(lane, _output(first))
    assert await store.release([first.shard_id]) == set()
    assert await store.lease([(first.shard_id, lane.node_id)]) == set()


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
    await dispatcher.detach(lane, DetachReason.STREAM_CLOSED)
    done = (await dispatcher.job(job.job_id)).shards_done == 1
    queued = first.shard_id in dispatcher._pending
    assert done != queued


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda a: _output(a, rows=1), "expected float32 2x384"),
        (lambda a: _output(a, digest="0" * 64), "digest does not match"),
        (lambda a: _output(a, tokens_sha256=b"\0" * 32), "ran other tokens than the task's"),
        (
            lambda a: dataclasses.replace(
                _output(a), output=b"\xff" * 9, digest=hashlib.sha256(b"\xff" * 9).hexdigest()
            ),
            "not an EmbedOutput",
        ),
    ],
)
async def test_a_bad_result_is_refused_and_the_shard_runs_again(
    parts: tuple[Dispatcher, NodeRegistry, JobStore],
    catalog: ModelCatalog,
    bad: Callable[[Assignment], ShardOutput],
    reason: str,
) -> None:
    dispatcher, registry, _store = parts
    job = await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, _ = _assignments(lane)
    await dispatcher.complete(lane, bad(first))
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
    with pytest.raises(FailedPreconditionError, match="does not hold shard 'nope'"):
        await dispatcher.complete(lane, ShardOutput("nope", b"", 0, 0.0, "", ""))


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


# -- redundancy: verification, disputes, stragglers --------------------------------------------


def _messages(lane: NodeLane) -> list[object]:
    return [lane.outbox.get_nowait() for _ in range(lane.outbox.qsize())]


async def _rows(store: JobStore, table: type) -> list:  # type: ignore[type-arg]
    async with store._sessions() as session:
        return list(await session.scalars(select(table)))


async def _run_all(
    dispatcher: Dispatcher, lanes: dict[NodeLane, int], job_id: str
) -> dict[str, list[str]]:
    """Let each lane run whatever it is given (seed -1: the true output, else a wrong one) until
    the job stops changing; returns which nodes ran each shard."""
    ran: dict[str, list[str]] = {}
    progress = True
    while progress:
        progress = False
        for lane, seed in lanes.items():
            for assignment in _assignments(lane):
                ran.setdefault(assignment.shard_id, []).append(lane.node_id)
                await dispatcher.complete(lane, _output(assignment, seed=seed))
                progress = True
    return ran


async def _run_all_at_once(
    dispatcher: Dispatcher, lanes: dict[NodeLane, int] | dict[NodeLane, Callable[[], int]]
) -> dict[str, list[str]]:
    """`_run_all` with each round's results sent at once: they reach the store in batches.
    A lane's seed may be a function, asked for each result."""
    ran: dict[str, list[str]] = {}
    while True:
        calls = []
        for lane, seed in lanes.items():
            for assignment in _assignments(lane):
                ran.setdefault(assignment.shard_id, []).append(lane.node_id)
                output = _output(assignment, seed=seed if isinstance(seed, int) else seed())
                calls.append(dispatcher.complete(lane, output))
        if not calls:
            return ran
        await asyncio.gather(*calls)


def _batch_sizes(dispatcher: Dispatcher) -> list[int]:
    """The sizes of the batches of results the dispatcher handles from now on."""
    sizes: list[int] = []
    handle = dispatcher._results._handle

    async def counted(items: Any) -> Any:
        sizes.append(len(items))
        return await handle(items)

    dispatcher._results._handle = counted
    return sizes


async def test_results_sent_at_once_are_recorded_in_batches_each_on_its_own(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = parts
    sizes = _batch_sizes(dispatcher)
    lanes = [await _node(registry, dispatcher, catalog) for _ in range(4)]
    jobs = [await dispatcher.submit(_job()) for _ in range(3)]
    held = {lane: _assignments(lane) for lane in lanes}
    first, other = held[lanes[0]][0], held[lanes[1]][0]
    outcome = await asyncio.gather(
        dispatcher.complete(lanes[0], _output(other)),  # a shard lane 0 never held
        dispatcher.complete(lanes[0], _output(first)),
        dispatcher.complete(lanes[1], _output(other)),
        dispatcher.complete(lanes[1], _output(other)),  # twice: counted once
        return_exceptions=True,
    )
    assert isinstance(outcome[0], FailedPreconditionError)
    assert outcome[1:3] == [None, None]
    assert isinstance(outcome[3], FailedPreconditionError)  # no longer held by then
    await asyncio.gather(
        *(
            dispatcher.complete(lane, _output(a))
            for lane, assignments in held.items()
            for a in assignments
            if a not in (first, other)
        )
    )
    ran = await _run_all_at_once(dispatcher, dict.fromkeys(lanes, -1))
    views = [await dispatcher.job(job.job_id) for job in jobs]
    assert {view.state for view in views} == {JobState.SUCCEEDED}
    shards = sum(view.shards_total for view in views)
    assert len(ran) + sum(map(len, held.values())) == shards
    assert len(await _rows(store, LedgerRow)) == shards
    assert sum(n.shards_done for n in await _rows(store, NodeRow)) == shards
    assert sizes[0] == 4
    assert max(sizes[1:]) > 1


async def test_a_liar_caught_within_a_batch_has_its_unchecked_results_run_again(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    """One batch holds a liar's unchecked result and, after it, the result that catches the
    liar on another shard: the unchecked one is recorded before the verdict reopens the liar's
    work, so it runs again elsewhere and no job finishes on it."""
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=0.0))
    liar = await _node(registry, dispatcher, catalog)
    honest = [await _node(registry, dispatcher, catalog) for _ in range(2)]
    # Every node starts vetted (no vetting); shards of even index are verified.
    dispatcher._placer.verify = lambda shard, lane, candidates=None: shard.index % 2 == 0  # type: ignore[method-assign]
    jobs = [await dispatcher.submit(_job()) for _ in range(3)]
    kept: list[Assignment] = []  # the liar's unchecked results, held back for the batch
    crafted = False

    def flight(assignment: Assignment) -> Any:
        return dispatcher._flights.get(assignment.shard_id)

    while True:
        given = {lane: _assignments(lane) for lane in (liar, *honest)}
        for a in given[liar]:
            if flight(a) is not None and flight(a).wanted == 1:
                kept.append(a)
        deciding = [
            (lane, a)
            for lane in honest
            for a in given[lane]
            if flight(a) is not None and len(flight(a).results) >= 2
        ]
        first = []
        if kept and deciding and not crafted:  # the batch: unchecked lies, then the verdicts
            crafted = True
            first = [dispatcher.complete(liar, _output(a, seed=1)) for a in kept]
            first += [dispatcher.complete(lane, _output(a)) for lane, a in deciding]
            kept = []
        rest = [dispatcher.complete(liar, _output(a, seed=1)) for a in given[liar] if a not in kept]
        rest += [
            dispatcher.complete(lane, _output(a))
            for lane in honest
            for a in given[lane]
            if (lane, a) not in deciding or not first
        ]
        if not first and not rest:
            if not kept:
                break
            rest = [dispatcher.complete(liar, _output(a, seed=1)) for a in kept]
            kept = []
        for batch in (first, rest):  # the liar's lane closes once it is cut off
            for outcome in await asyncio.gather(*batch, return_exceptions=True):
                assert outcome is None or isinstance(outcome, FailedPreconditionError)
    assert crafted, "the scenario never formed the batch it tests"
    for job in jobs:
        assert (await dispatcher.job(job.job_id)).state is JobState.SUCCEEDED
        for doc in [d async for d in store.results(job.job_id)]:
            assert np.allclose(doc.outputs["window_embeddings"], 1 / np.sqrt(384)), (
                "a liar's output in a result"
            )
    paid = {r.address for r in await _rows(store, LedgerRow) if not r.withheld}
    assert liar.node_id not in paid


async def test_a_verified_shard_runs_on_two_nodes_and_is_paid_once(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=1.0))
    a = await _node(registry, dispatcher, catalog)
    b = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    ran = await _run_all(dispatcher, {a: -1, b: -1}, job.job_id)
    assert all(sorted(nodes) == sorted([a.node_id, b.node_id]) for nodes in ran.values())
    view = await dispatcher.job(job.job_id)
    assert view.state is JobState.SUCCEEDED
    ledger = await _rows(store, LedgerRow)
    assert sorted(r.shard_id for r in ledger) == sorted(ran), "each shard paid once"
    verifications = await _rows(store, VerificationRow)
    assert len(verifications) == 2 * len(ran)
    assert all(v.agreed for v in verifications)


async def test_a_third_node_settles_a_dispute_and_the_liar_is_caught(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=1.0))
    liar = await _node(registry, dispatcher, catalog)
    honest = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    await _run_all(dispatcher, {liar: 1, honest: -1}, job.job_id)
    assert (await dispatcher.job(job.job_id)).shards_done == 0, "a dispute is not a result"
    judge = await _node(registry, dispatcher, catalog)
    ran = await _run_all(dispatcher, {liar: 1, honest: -1, judge: -1}, job.job_id)
    assert (await dispatcher.job(job.job_id)).state is JobState.SUCCEEDED
    assert all(judge.node_id in nodes for nodes in ran.values())
    shards = len(ran)
    nodes = {n.node_id: n for n in await _rows(store, NodeRow)}
    assert nodes[liar.node_id].verifications_failed == shards
    assert nodes[liar.node_id].reputation == pytest.approx(0.5**shards)
    assert liar.node_id in await store._ledger.withheld()
    assert nodes[honest.node_id].verifications_failed == 0
    assert nodes[honest.node_id].verifications_passed == shards
    ledger = await _rows(store, LedgerRow)
    assert len(ledger) == shards
    assert liar.node_id not in {r.address for r in ledger}
    # Below the threshold (0.2) the liar was cut off.
    await asyncio.sleep(0.05)  # the cut-off closes the lane in a task of its own
    assert liar.node_id not in dispatcher.lanes.connected()


async def test_a_caught_node_earns_nothing_in_that_epoch(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=0.0))
    node = await _node(registry, dispatcher, catalog)
    await dispatcher.submit(_job())
    for assignment in _assignments(node):
        await dispatcher.complete(node, _output(assignment))
    await dispatcher._standing.record_verification("some-shard", (), ((node.node_id, 0.1),))
    ledger = await _rows(store, LedgerRow)
    assert ledger
    assert all(r.withheld for r in ledger)


async def test_a_node_below_the_reputation_threshold_is_refused(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _store = await make_parts(WorkPolicy(verify_fraction=0.0))
    account = Account.create()
    node = await _node(registry, dispatcher, catalog, account)
    for shard in ("s1", "s2", "s3"):
        await dispatcher._standing.record_verification(shard, (), ((node.node_id, 0.0),))
    with pytest.raises(PermissionDeniedError, match=r"reputation 0\.12 is below 0\.2"):
        await _node(registry, dispatcher, catalog, account)


async def test_a_straggler_gets_a_backup_and_the_first_result_wins(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    policy = WorkPolicy(verify_fraction=0.0, straggler_factor=0.0, straggler_slack_s=0.0)
    dispatcher, registry, store = await make_parts(policy)
    slow = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    held = _assignments(slow)
    fast = await _node(registry, dispatcher, catalog)
    await _run_all(dispatcher, {fast: -1}, job.job_id)  # the rest of the queue
    assert (await dispatcher.job(job.job_id)).state is JobState.RUNNING
    assert await dispatcher.check_stragglers() == len(held)
    backups = _assignments(fast)
    assert {b.shard_id for b in backups} == {h.shard_id for h in held}
    for backup in backups:
        await dispatcher.complete(fast, _output(backup))
    assert (await dispatcher.job(job.job_id)).state is JobState.SUCCEEDED
    cancels = [m for m in _messages(slow) if isinstance(m, ShardCancel)]
    assert {c.shard_id for c in cancels} == {h.shard_id for h in held}
    late = held[0]
    await dispatcher.complete(slow, _output(late))  # the straggler's late result is dropped
    acks = [m for m in _messages(slow) if isinstance(m, ShardAck)]
    assert [(a.accepted, a.reason) for a in acks] == [(False, "shard was revoked")]
    ledger = await _rows(store, LedgerRow)
    assert len(ledger) == (await dispatcher.job(job.job_id)).shards_total, "each shard paid once"
    assert {r.address for r in ledger} == {fast.node_id}


async def test_a_lone_node_result_stands_unverified(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _store = await make_parts(WorkPolicy(verify_fraction=1.0))
    node = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    await _run_all(dispatcher, {node: -1}, job.job_id)
    assert (await dispatcher.job(job.job_id)).state is JobState.SUCCEEDED


async def test_an_onlookers_challenge_does_not_void_the_nodes_own(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    _dispatcher, registry, _store = await make_parts(WorkPolicy(verify_fraction=0.0))
    account = Account.create()
    message, nonce = registry.challenge(account.address)
    registry.challenge(account.address)  # anyone may ask for a challenge for any address
    signature = bytes(Account.sign_message(encode_defunct(text=message), account.key).signature)
    registration = NodeRegistration(
        address=account.address,
        nonce=nonce,
        signature=signature,
        hardware=Hardware(),
        models=(ModelOffer(MODEL, catalog.get(MODEL).sha256, 1000.0),),
        max_inflight_shards=2,
        version="test",
        workloads=("embed",),
    )
    node_id, _ = await registry.register(registration)
    assert node_id == account.address.lower()
    with pytest.raises(UnauthenticatedError, match="no open challenge"):
        await registry.register(registration)  # a challenge is good for one attempt


async def test_a_node_that_fails_audits_below_the_threshold_is_cut_off_at_once(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    """Audits report to the same standing as verifications: a node whose failed audits take it
    below --min-reputation loses its lane and its work right away, not at its next
    registration."""
    dispatcher, registry, _store = parts
    bad = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    held = {a.shard_id for a in _assignments(bad)}
    assert held
    for _ in range(3):  # 1.0 → 0.5 → 0.25 → 0.125 < 0.2
        await dispatcher._standing.record_audit("bafy-block", bad.node_id, False, "wrong proof")
    await asyncio.sleep(0.05)  # the cut-off closes the lane in a task of its own
    assert bad.node_id not in dispatcher.lanes.connected()
    good = await _node(registry, dispatcher, catalog)
    assert held <= {a.shard_id for a in _assignments(good)}, "its shards run elsewhere"
    assert not dispatcher._standing.allowed(bad.node_id)
    with pytest.raises(UnauthenticatedError):
        await dispatcher.attach(bad.node_id, bad.token)  # its session is gone too
    assert (await dispatcher.job(job.job_id)).state is JobState.RUNNING


async def test_a_cut_off_nodes_waiting_result_is_not_accepted(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    """Results a node sent before it was cut off, still waiting their turn, do not count."""
    dispatcher, registry, _store = parts
    bad = await _node(registry, dispatcher, catalog)
    job = await dispatcher.submit(_job())
    first, _ = _assignments(bad)
    for _ in range(3):
        await dispatcher._standing.record_audit("bafy-block", bad.node_id, False, "wrong proof")
    await dispatcher.complete(bad, _output(first))  # before the cut-off task has run
    acks = [m for m in _messages(bad) if isinstance(m, ShardAck)]
    assert [(a.accepted, a.reason) for a in acks] == [(False, "node is cut off")]
    assert (await dispatcher.job(job.job_id)).shards_done == 0
    assert first.shard_id in dispatcher._pending


async def test_a_replaced_lanes_pending_audit_is_answered_at_once(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    """A node that reconnects while an audit is out is not failed for the old stream's
    silence: the audit learns it left."""
    dispatcher, registry, _store = parts
    account = Account.create()
    lane = await _node(registry, dispatcher, catalog, account)
    audit = asyncio.create_task(
        dispatcher.lanes.audit(lane.node_id, AuditChallenge("bafy-block", b"n"), patience=30)
    )
    await asyncio.sleep(0)
    await _node(registry, dispatcher, catalog, account)  # a new session and lease stream
    answer = await asyncio.wait_for(audit, 5)
    assert answer.left


async def test_a_check_that_raises_refuses_the_output(
    parts: tuple[Dispatcher, NodeRegistry, JobStore],
    catalog: ModelCatalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever a workload's check raises, the output is refused and the shard runs again."""
    dispatcher, registry, _store = parts
    job = await dispatcher.submit(_job())
    lane = await _node(registry, dispatcher, catalog)
    first, _ = _assignments(lane)

    def broken(self: object, detail: bytes, output: bytes) -> None:
        raise ValueError("numpy said no")

    monkeypatch.setattr(EmbedWorkload, "check", broken)
    await dispatcher.complete(lane, _output(first))
    acks = [m for m in _messages(lane) if isinstance(m, ShardAck)]
    assert [a.accepted for a in acks] == [False]
    assert "ValueError: 'numpy said no'" in acks[0].reason or "numpy said no" in acks[0].reason
    assert (await dispatcher.job(job.job_id)).shards_done == 0


class _NoWork(EmbedWorkload):
    """A defective plugin: its plan has no tasks."""

    name = "test-no-work"

    def plan(self, model: str, documents: Any, options: Any, context: Any) -> JobPlan:
        planned = super().plan(model, documents, options, context)
        return dataclasses.replace(planned, tasks=())


async def test_a_defective_plan_is_an_internal_error_and_stores_nothing(
    parts: tuple[Dispatcher, NodeRegistry, JobStore],
) -> None:
    dispatcher, _registry, store = parts
    workloads.register(_NoWork())
    request = dataclasses.replace(_job(), workload="test-no-work")
    with pytest.raises(TokenweaveError, match="workload test-no-work planned no tasks"):
        await dispatcher.submit(request)
    assert await _rows(store, JobRow) == []


async def test_a_new_nodes_work_is_all_verified_until_it_has_a_record(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    """With sampling off, a node's first results are still checked on another node (vetting);
    once two of them agreed, its shards run once."""
    dispatcher, registry, store = await make_parts(WorkPolicy(verify_fraction=0.0), vetting=2)
    a = await _node(registry, dispatcher, catalog)
    b = await _node(registry, dispatcher, catalog)
    text = " ".join(f"word{i}" for i in range(400))
    job = await dispatcher.submit(
        JobRequest("embed", MODEL, (DocumentInput("a", text),), {"window": "16", "overlap": "2"})
    )
    ran = await _run_all(dispatcher, {a: -1, b: -1}, job.job_id)
    assert (await dispatcher.job(job.job_id)).state is JobState.SUCCEEDED
    twice = [s for s, nodes in ran.items() if len(nodes) == 2]
    once = [s for s, nodes in ran.items() if len(nodes) == 1]
    # Until each node has 2 agreements, what it is leased (2 slots each) runs twice too.
    assert 2 <= len(twice) <= 2 * (2 + 2), "each node's first results are verified"
    assert len(once) >= len(ran) - 8 > 0, "then sampling (here: none) decides"
    assert dispatcher._standing.vetted(a.node_id)
    assert dispatcher._standing.vetted(b.node_id)
    verifications = await _rows(store, VerificationRow)
    assert len(verifications) == 2 * len(twice)


async def test_a_speed_liar_does_not_take_all_the_work(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    """A node that claims 9.9e9 tokens/s is believed only up to the new-node cap until it has
    shown its speed: the honest node gets its share of the first shards."""
    dispatcher, registry, _store = await make_parts(
        WorkPolicy(verify_fraction=0.0, new_node_tokens_per_second=1000.0)
    )
    honest = await _node(registry, dispatcher, catalog, tokens_per_second=1000.0)
    liar = await _node(registry, dispatcher, catalog, tokens_per_second=9.9e9)
    text = " ".join(f"word{i}" for i in range(400))
    await dispatcher.submit(
        JobRequest("embed", MODEL, (DocumentInput("a", text),), {"window": "16", "overlap": "2"})
    )
    assert len(_assignments(honest)) == 2, "both nodes fill their slots"
    assert len(_assignments(liar)) == 2


async def test_a_large_network_beats_less_often_and_results_count_as_beats(
    parts: tuple[Dispatcher, NodeRegistry, JobStore], catalog: ModelCatalog
) -> None:
    """New sessions get a heartbeat interval that keeps the network within the coordinator's
    heartbeats a second, and every session an expiry as much longer as the network's interval
    now; the lease stream keeps a node alive."""
    dispatcher, registry, _ = parts
    registry._max_rate = 1.0  # one heartbeat a second for the whole network
    lanes = [await _node(registry, dispatcher, catalog) for _ in range(5)]
    assert [registry.heartbeat_interval(lane.node_id) for lane in lanes] == [2, 2, 3, 4, 5]
    # A beat answers with the network's interval now: the first node, given 2 s when it was
    # alone, beats every 5 s from its next beat, and may stay silent as long as the last.
    first = lanes[0]
    assert registry.heartbeat(first.node_id, first.token) == 5
    assert registry.heartbeat_interval(first.node_id) == 5
    assert registry._live[first.node_id].expiry_s == registry._live[lanes[-1].node_id].expiry_s
    for lane in lanes:  # silent for 100 s: past 60 s at 2 s beats, not 150 s at 5 s (5 nodes)
        registry._live[lane.node_id].last_seen -= 100
    assert registry.expired() == []
    for lane in lanes:  # 160 s
        registry._live[lane.node_id].last_seen -= 60
    registry.touch(lanes[0].node_id)  # it sent a result
    assert sorted(registry.expired()) == sorted(lane.node_id for lane in lanes[1:])
    # Alone again, the first node is told to beat every 2 s again.
    assert registry.heartbeat(lanes[0].node_id, lanes[0].token) == 2
