"""JobStore: jobs, documents and shards in the database.

Every change to a job goes through here, in one transaction, and bumps the job's version so that
watchers can resume. The job's workload plans it and merges its results; what a shard carries to
a node and back is opaque bytes here. ORM rows never leave this module: callers get frozen views.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from sqlalchemy import Table, Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave import tensors, workloads
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._completion import Accepted, Completed, Completions
from tokenweave.coordinator._convert import job_from_row, queued_shard
from tokenweave.coordinator._db import (
    DocumentRow,
    JobRow,
    ShardRow,
    chunked,
    transient,
    utcnow,
)
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._payloads import Payloads
from tokenweave.coordinator._planned import check_documents, insert_rows, planned_rows
from tokenweave.coordinator._quota import ClientQuota, check_quota
from tokenweave.coordinator._reopen import Reopened, reopen_unverified
from tokenweave.coordinator._shares import NodeShares
from tokenweave.coordinator._views import (
    DocumentResult,
    JobRequest,
    QueuedShard,
    ShardState,
)
from tokenweave.errors import (
    FailedPreconditionError,
    NotFoundError,
    clip,
)
from tokenweave.types import JobInfo, JobState
from tokenweave.workloads import (
    PlanContext,
)

_SHARDS = cast(Table, ShardRow.__table__)
#: Per leased shard: its node (executemany).
_LEASED_TO = (
    update(_SHARDS)
    .where(_SHARDS.c.shard_id == bindparam("b_shard"))
    .values(node_id=bindparam("b_node"))
)

#: Times a batch of results is tried when the database aborts it to break a deadlock.
DEADLOCK_RETRIES = 3

#: Documents read from the database at a time when streaming a job's results.
RESULT_PAGE = 64
#: Jobs remembered as started at most (forgotten all at once past it: the cost is one
#: statement per job to learn it again).
STARTED_KEPT = 4096


@dataclass(frozen=True, slots=True)
class JobLimits:
    max_document_bytes: int
    max_documents: int
    #: Work items (embed: windows) a workload groups into one task (--windows-per-shard).
    items_per_task: int
    #: Coordinator defaults for workload options a job leaves out (embed: --default-overlap).
    option_defaults: Mapping[str, str] = field(default_factory=dict)
    quota: ClientQuota = field(default_factory=ClientQuota)


class JobStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: ModelCatalog,
        limits: JobLimits,
        ledger: RewardLedger,
        payload_dir: Path | None = None,
        owner: str = "",
    ) -> None:
        """`payload_dir`: where large task payloads are kept as files (None: in the database).
        `owner`: this coordinator's instance id; it changes only the shards it claimed
        (`_claims.py`), as several coordinators may share the database."""
        self._sessions = sessions
        self.owner = owner
        self._catalog = catalog
        self._limits = limits
        self._ledger = ledger
        self._payloads = Payloads(sessions, payload_dir)
        self._completions = Completions(owner, ledger, self._payloads, self._context)
        #: Jobs known to have left QUEUED (their leases skip the job's row).
        self._started: set[str] = set()
        self._shares = NodeShares()

    # -- submission ---------------------------------------------------------------------------

    def _context(self, model: str) -> PlanContext:
        entry = self._catalog.get(model)
        return PlanContext(
            model=entry.spec,
            model_sha256=entry.sha256,
            tokenizer=entry.tokenizer,
            items_per_task=self._limits.items_per_task,
            defaults=self._limits.option_defaults,
            chat_template=entry.chat_template,
        )

    async def submit(
        self, request: JobRequest, claimed: bool = True
    ) -> tuple[JobInfo, list[QueuedShard]]:
        """Validate and plan a job (its workload cuts it into tasks) and store it, queued,
        within its owner's quota. `claimed`: its shards are this coordinator's, returned for
        its queue; else they are stored unowned, for whichever coordinator claims them."""
        workload = workloads.get(request.workload)
        entry = self._catalog.get(request.model)
        check_documents(
            request.documents, self._limits.max_documents, self._limits.max_document_bytes
        )
        async with self._sessions() as session:  # before the work of planning
            await check_quota(session, self._limits.quota, request.owner, None)
        context = self._context(request.model)
        plan = await asyncio.to_thread(
            workload.plan, request.model, request.documents, request.options, context
        )
        rows = await asyncio.to_thread(
            planned_rows,
            request,
            plan,
            workload.name,
            entry.sha256,
            self.owner if claimed else None,
        )
        await self._payloads.spill(rows.shards)
        async with self._sessions.begin() as session:
            await check_quota(session, self._limits.quota, request.owner, plan.tokens)
            session.add(rows.job)
            await session.flush()
            await insert_rows(session, rows.documents, rows.shards)
        queued = [queued_shard(s, rows.job) for s in rows.shards] if claimed else []
        return job_from_row(rows.job), queued

    # -- reads --------------------------------------------------------------------------------

    async def get(self, job_id: str) -> JobInfo:
        async with self._sessions() as session:
            row = await session.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"no job with id {clip(job_id)}")
            return job_from_row(row, await self._shares.count(session, row))

    async def payload(self, shard_id: str) -> bytes:
        """What a shard's node is sent (kept in the database or a file until then)."""
        return await self._payloads.read(shard_id)

    async def payloads(self, shard_ids: Sequence[str]) -> dict[str, bytes | Exception]:
        """Each shard's payload, or why it cannot be read (`Payloads.read_many`)."""
        return await self._payloads.read_many(shard_ids)

    async def pending_shards(self) -> list[QueuedShard]:
        """This coordinator's shards of unfinished jobs that no node holds, oldest job first.

        Leases do not survive a coordinator restart: shards that were leased are pending again.
        """
        async with self._sessions.begin() as session:
            await session.execute(
                update(ShardRow)
                .where(ShardRow.state == ShardState.LEASED, ShardRow.owner == self.owner)
                .values(state=ShardState.PENDING, node_id=None, leased_at=None)
            )
            rows = await session.execute(
                select(ShardRow, JobRow)
                .join(JobRow, JobRow.job_id == ShardRow.job_id)
                .where(
                    ShardRow.state == ShardState.PENDING,
                    ShardRow.owner == self.owner,
                    JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]),
                )
                .order_by(JobRow.created_at, ShardRow.index)
            )
            return [queued_shard(shard, job) for shard, job in rows]

    async def unfinished(self) -> dict[str, ShardState]:
        """Every shard of an unfinished job that this coordinator holds, pending or leased, with
        its state."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(ShardRow.shard_id, ShardRow.state)
                .join(JobRow, JobRow.job_id == ShardRow.job_id)
                .where(
                    ShardRow.owner == self.owner,
                    ShardRow.state.in_([ShardState.PENDING, ShardState.LEASED]),
                    JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]),
                )
            )
            return {shard_id: ShardState(state) for shard_id, state in rows}

    async def requeue(self, shard_ids: Sequence[str]) -> list[QueuedShard]:
        """`shard_ids` pending again (those leased are released), as queue entries; shards
        done, or of a finished job, or no longer this coordinator's meanwhile are left out."""
        async with self._sessions.begin() as session:
            await session.execute(self._released(shard_ids))
            rows = await session.execute(
                select(ShardRow, JobRow)
                .join(JobRow, JobRow.job_id == ShardRow.job_id)
                .where(
                    ShardRow.shard_id.in_(shard_ids),
                    ShardRow.owner == self.owner,
                    ShardRow.state == ShardState.PENDING,
                    JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]),
                )
                .order_by(JobRow.created_at, ShardRow.index)
            )
            return [queued_shard(shard, job) for shard, job in rows]

    async def results(self, job_id: str, page: int = RESULT_PAGE) -> AsyncIterator[DocumentResult]:
        """Each document's merged result; only for a job that has succeeded. Read a page at a
        time in short sessions: a slow reader holds no database connection."""
        job = await self.get(job_id)
        if job.state is not JobState.SUCCEEDED:
            raise FailedPreconditionError(
                f"job {job_id} is {job.state}; results exist once it has SUCCEEDED"
            )
        after = -1
        while True:
            async with self._sessions() as session:
                docs = list(
                    await session.scalars(
                        select(DocumentRow)
                        .where(DocumentRow.job_id == job_id, DocumentRow.index > after)
                        .order_by(DocumentRow.index)
                        .limit(page)
                    )
                )
            for doc in docs:
                if doc.result is None:
                    raise FailedPreconditionError(
                        f"job {job_id}: document {doc.index} has no result"
                    )
                yield DocumentResult(doc.index, doc.name, doc.tokens, tensors.unpack(doc.result))
            if len(docs) < page:
                return
            after = docs[-1].index

    # -- changes ------------------------------------------------------------------------------

    async def lease(self, leases: Sequence[tuple[str, str]]) -> set[str]:
        """Lease pending shards of this coordinator's to nodes, (shard id, node id) pairs;
        returns the ids leased (one no longer pending, or no longer this coordinator's, is
        not). A statement a thousand shards, so that a coordinator taking this one's shards
        over at the same moment either sees a lease or prevents it."""
        if not leases:
            return set()
        now = utcnow()
        leased: dict[str, str] = {}
        nodes = dict(leases)
        async with self._sessions.begin() as session:
            for chunk in chunked(list(nodes)):
                rows = await session.execute(
                    update(ShardRow)
                    .where(
                        ShardRow.shard_id.in_(chunk),
                        ShardRow.state == ShardState.PENDING,
                        ShardRow.owner == self.owner,
                    )
                    .values(state=ShardState.LEASED, attempts=ShardRow.attempts + 1, leased_at=now)
                    .returning(ShardRow.shard_id, ShardRow.job_id)
                    .execution_options(synchronize_session=False)
                )
                leased.update((shard_id, job_id) for shard_id, job_id in rows)
            if leased:  # each to its node, in the same transaction
                await session.execute(
                    _LEASED_TO, [{"b_shard": s, "b_node": nodes[s]} for s in leased]
                )
            # A job leaves QUEUED once, and never comes back.
            starting = sorted(set(leased.values()) - self._started)
            if starting:
                await session.execute(
                    update(JobRow)
                    .where(JobRow.job_id.in_(starting), JobRow.state == JobState.QUEUED)
                    .values(state=JobState.RUNNING, started_at=now, version=JobRow.version + 1)
                    .execution_options(synchronize_session=False)
                )
        if len(self._started) + len(starting) > STARTED_KEPT:
            self._started.clear()
        self._started.update(starting)
        return set(leased)

    def _released(self, shard_ids: Sequence[str]) -> Update:
        """The statement that puts this coordinator's leased shards among `shard_ids` back."""
        return (
            update(ShardRow)
            .where(
                ShardRow.shard_id.in_(shard_ids),
                ShardRow.state == ShardState.LEASED,
                ShardRow.owner == self.owner,
            )
            .values(state=ShardState.PENDING, node_id=None, leased_at=None)
        )

    async def reopen_unverified(self, node_id: str) -> Reopened:
        """`reopen_unverified` (_reopen.py) in a transaction: the reopened shards are this
        coordinator's to run again."""
        async with self._sessions.begin() as session:
            return await reopen_unverified(session, node_id, self.owner)

    async def release(self, shard_ids: Sequence[str]) -> set[str]:
        """Put leased shards back in the queue; returns the ones that were released (a shard
        done or cancelled meanwhile is left alone). The dispatcher calls it once no node runs
        the shard any more."""
        if not shard_ids:
            return set()
        async with self._sessions.begin() as session:
            released = await session.scalars(self._released(shard_ids).returning(ShardRow.shard_id))
            return set(released)

    async def complete_shards(self, accepted: Sequence[Accepted]) -> list[Completed | Exception]:
        """Record accepted results in one transaction, their ledger rows with them
        (`Completions.record`): each gets its `Completed` or its own error, and a database
        failure fails them all."""
        if not accepted:
            return []
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                async with self._sessions.begin() as session:
                    outcome = await self._completions.record(session, accepted)
                break
            except Exception as exc:
                if attempt < DEADLOCK_RETRIES and transient(exc):
                    continue  # rolled back whole: the batch runs again
                return [exc] * len(accepted)
        for done in outcome:
            if isinstance(done, Completed) and done.finished:
                await self._payloads.forget(done.job.job_id)
        return outcome

    async def fail(self, job_id: str, error: str) -> JobInfo:
        return await self._finish(job_id, JobState.FAILED, error)

    async def cancel(self, job_id: str) -> JobInfo:
        return await self._finish(job_id, JobState.CANCELLED, "")

    async def _finish(self, job_id: str, state: JobState, error: str) -> JobInfo:
        async with self._sessions.begin() as session:
            job = await session.get(JobRow, job_id, with_for_update=True)
            if job is None:
                raise NotFoundError(f"no job with id {clip(job_id)}")
            if JobState(job.state).finished:
                if state is JobState.CANCELLED:
                    raise FailedPreconditionError(f"job {job_id} has already {job.state}")
                return job_from_row(job)
            job.state = state
            job.error = error
            job.finished_at = utcnow()
            job.version += 1
            await session.execute(
                update(ShardRow)
                .where(ShardRow.job_id == job_id, ShardRow.state != ShardState.DONE)
                .values(state=ShardState.CANCELLED)
            )
            ended = job_from_row(job)
        await self._payloads.forget(job_id)
        return ended
