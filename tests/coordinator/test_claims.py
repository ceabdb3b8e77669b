"""Several coordinators on one database (coordinator/_claims.py): claims never overlap, a dead
coordinator's shards come back for the living, and a coordinator that lost a shard can neither
lease nor release it. On SQLite, and on PostgreSQL, where SKIP LOCKED does the work (the
`sessions` fixture of conftest.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tokenweave.coordinator._claims import (
    QUEUED_PER_SLOT,
    Instances,
    claim_limit,
    instance_id,
)
from tokenweave.coordinator._db import (
    CoordinatorRow,
    JobRow,
    ShardPayloadRow,
    ShardRow,
    transient,
    utcnow,
)
from tokenweave.coordinator._jobs import JobLimits, JobStore
from tokenweave.coordinator._views import ShardState
from tokenweave.types import JobState

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return async_sessionmaker(engine, expire_on_commit=False)


async def _job(sessions: Sessions, shards: int, owner: str | None = None) -> str:
    job_id = uuid.uuid4().hex
    async with sessions.begin() as session:
        session.add(
            JobRow(
                job_id=job_id,
                state=JobState.QUEUED,
                workload="embed",
                options={},
                model="m",
                model_sha256="0" * 64,
                documents=1,
                tokens=shards,
                items=shards,
                shards_total=shards,
                created_at=utcnow(),
                started_at=None,
                finished_at=None,
            )
        )
        await session.flush()
        session.add_all(
            ShardRow(
                shard_id=f"{job_id}-{i}",
                job_id=job_id,
                index=i,
                payload_row=ShardPayloadRow(payload=b"p"),
                detail=b"d",
                cost=1,
                state=ShardState.PENDING,
                owner=owner,
            )
            for i in range(shards)
        )
    return job_id


async def _owners(sessions: Sessions) -> dict[str, tuple[str | None, str]]:
    async with sessions() as session:
        rows = await session.execute(select(ShardRow.shard_id, ShardRow.owner, ShardRow.state))
        return {shard_id: (owner, state) for shard_id, owner, state in rows}


def test_an_instance_keeps_its_id_across_restarts(tmp_path: Path) -> None:
    first = instance_id(tmp_path)
    assert len(first) == 16
    assert instance_id(tmp_path) == first
    (tmp_path / "coordinator_id").write_text("not an id\n")
    assert instance_id(tmp_path) not in (first, "not an id")


def test_claim_limit() -> None:
    assert claim_limit(alone=True, slots=0, queued=0) is None
    assert claim_limit(alone=False, slots=0, queued=0) == 0  # no nodes: leave it to the others
    assert claim_limit(alone=False, slots=3, queued=2) == QUEUED_PER_SLOT * 3 - 2
    assert claim_limit(alone=False, slots=1, queued=100) == 0


async def test_claims_at_the_same_moment_never_overlap(sessions: Sessions) -> None:
    job_id = await _job(sessions, 300)
    coordinators = [Instances(sessions, f"{i:016x}", ttl_s=30) for i in range(3)]

    async def claim_all(instances: Instances) -> list[str]:
        taken: list[str] = []
        while batch := await instances.claim(7):
            assert len(batch) <= 7
            assert [s.index for s in batch] == sorted(s.index for s in batch)  # oldest first
            taken += [s.shard_id for s in batch]
        return taken

    claimed = await asyncio.gather(*(claim_all(c) for c in coordinators))
    every = [shard_id for taken in claimed for shard_id in taken]
    assert len(every) == len(set(every)) == 300
    owners = await _owners(sessions)
    for instances, taken in zip(coordinators, claimed, strict=True):
        assert all(owners[s][0] == instances.coordinator_id for s in taken)
    assert all(s.startswith(job_id) for s in every)


async def test_a_finished_job_is_not_claimed(sessions: Sessions) -> None:
    job_id = await _job(sessions, 4)
    async with sessions.begin() as session:
        await session.execute(
            update(JobRow).where(JobRow.job_id == job_id).values(state=JobState.CANCELLED)
        )
    assert await Instances(sessions, "a" * 16, ttl_s=30).claim(None) == []


async def test_a_dead_coordinators_shards_come_back(sessions: Sessions) -> None:
    alive, dead = Instances(sessions, "a" * 16, ttl_s=30), Instances(sessions, "d" * 16, ttl_s=30)
    assert await dead.beat("127.0.0.1:1") == 1
    assert await alive.beat("127.0.0.1:2") == 2
    assert not alive.alone
    await _job(sessions, 6)
    taken = await dead.claim(None)
    assert len(taken) == 6
    async with sessions.begin() as session:  # two of them run on its nodes
        await session.execute(
            update(ShardRow)
            .where(ShardRow.shard_id.in_([taken[0].shard_id, taken[1].shard_id]))
            .values(state=ShardState.LEASED, node_id="n1")
        )
    assert await alive.take_over_dead() == 0  # its heartbeat is fresh
    assert await alive.claim(None) == []

    async with sessions.begin() as session:  # it stops beating
        await session.execute(
            update(CoordinatorRow)
            .where(CoordinatorRow.coordinator_id == dead.coordinator_id)
            .values(heartbeat_at=utcnow() - dt.timedelta(seconds=31))
        )
    assert await alive.beat("127.0.0.1:2") == 1
    assert await alive.take_over_dead() == 6
    owners = await _owners(sessions)
    assert set(owners.values()) == {(None, ShardState.PENDING)}
    async with sessions() as session:
        rows = await session.scalars(select(CoordinatorRow.coordinator_id))
        assert list(rows) == [alive.coordinator_id], "the dead one is forgotten"
    assert {s.shard_id for s in await alive.claim(None)} == set(owners)


async def test_leaving_gives_the_shards_back(sessions: Sessions) -> None:
    first, second = Instances(sessions, "1" * 16, ttl_s=30), Instances(sessions, "2" * 16, ttl_s=30)
    await first.beat("a")
    await _job(sessions, 3)
    assert len(await first.claim(None)) == 3
    assert await first.leave() == 3
    assert len(await second.claim(None)) == 3
    async with sessions() as session:
        assert await session.get(CoordinatorRow, first.coordinator_id) is None


def _store(sessions: Sessions, owner: str) -> JobStore:
    """A JobStore for the shard writes alone (no planning, no ledger)."""
    return JobStore(sessions, cast(Any, None), JobLimits(1, 1, 1), cast(Any, None), owner=owner)


async def test_only_the_owner_leases_and_releases(sessions: Sessions) -> None:
    job_id = await _job(sessions, 2, owner="a" * 16)
    mine, theirs = _store(sessions, "a" * 16), _store(sessions, "b" * 16)
    shard_id = f"{job_id}-0"
    assert await theirs.lease([(shard_id, "n1")]) == set()
    assert await mine.lease([(shard_id, "n1")]) == {shard_id}
    assert await mine.lease([(shard_id, "n2")]) == set()  # leased already
    async with sessions() as session:
        row = await session.get(ShardRow, shard_id)
        assert row is not None
        assert (row.node_id, row.attempts) == ("n1", 1)
    async with sessions() as session:
        job = await session.get(JobRow, job_id)
        assert job is not None
        assert (job.state, job.version) == (JobState.RUNNING, 1)
    assert await theirs.release([shard_id]) == set()
    assert await theirs.requeue([shard_id]) == []
    assert await theirs.unfinished() == {}
    assert await mine.unfinished() == {
        shard_id: ShardState.LEASED,
        f"{job_id}-1": ShardState.PENDING,
    }
    assert await mine.release([shard_id]) == {shard_id}


async def test_one_statement_leases_many_shards_each_to_its_node(sessions: Sessions) -> None:
    job_id = await _job(sessions, 5, owner="a" * 16)
    store = _store(sessions, "a" * 16)
    leases = [(f"{job_id}-{i}", f"n{i % 2}") for i in range(4)] + [("no-such-shard", "n9")]
    assert await store.lease(leases) == {f"{job_id}-{i}" for i in range(4)}
    assert await store.lease([(f"{job_id}-0", "n5"), (f"{job_id}-4", "n5")]) == {f"{job_id}-4"}
    async with sessions() as session:
        rows = (await session.scalars(select(ShardRow).where(ShardRow.job_id == job_id))).all()
    assert {r.shard_id: (r.state, r.node_id) for r in rows} == {
        f"{job_id}-{i}": (ShardState.LEASED, "n5" if i == 4 else f"n{i % 2}") for i in range(5)
    }


async def test_shards_leased_to_no_one_are_pending_again(sessions: Sessions) -> None:
    """A database from before coordinators shared one: its leases were the stopped process's."""
    job_id = await _job(sessions, 2)
    async with sessions.begin() as session:
        await session.execute(
            update(ShardRow)
            .where(ShardRow.shard_id == f"{job_id}-0")
            .values(state=ShardState.LEASED, node_id="n1")
        )
    instances = Instances(sessions, "a" * 16, ttl_s=30)
    await instances.take_over_dead()
    assert set((await _owners(sessions)).values()) == {(None, ShardState.PENDING)}
    assert len(await instances.claim(None)) == 2


class _AbortedError(Exception):
    """What asyncpg's error looks like to SQLAlchemy's: the server's SQLSTATE on `orig`."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.orig = type("Orig", (), {"sqlstate": sqlstate})()


def test_a_deadlock_or_serialization_abort_is_transient_and_nothing_else_is() -> None:
    assert transient(_AbortedError("40P01"))
    assert transient(_AbortedError("40001"))
    assert not transient(_AbortedError("23505"))  # a unique violation stays an error
    assert not transient(ValueError("deadlock? no"))


async def test_a_batch_of_results_aborted_by_a_deadlock_runs_again(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(sessions, "a" * 16)
    calls = 0

    async def record(session: AsyncSession, accepted: object) -> list[object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise _AbortedError("40P01")
        return ["done"]

    monkeypatch.setattr(store._completions, "record", record)
    assert await store.complete_shards([cast(Any, "result")]) == ["done"]
    assert calls == 2
