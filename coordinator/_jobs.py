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

from sqlalchemy import Update, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave import tensors, workloads
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._convert import job_from_row, queued_shard
from tokenweave.coordinator._db import (
    DocumentRow,
    JobRow,
    NodeRow,
    ShardRow,
    utcnow,
)
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._payloads import Payloads
from tokenweave.coordinator._planned import (
    check_documents,
    check_stage,
    planned_rows,
    shard_row,
)
from tokenweave.coordinator._quota import ClientQuota, check_quota
from tokenweave.coordinator._reopen import Reopened, reopen_unverified
from tokenweave.coordinator._shares import NodeShares
from tokenweave.coordinator._views import (
    DocumentResult,
    JobRequest,
    QueuedShard,
    ShardOutput,
    ShardState,
)
from tokenweave.errors import (
    FailedPreconditionError,
    NotFoundError,
    clip,
)
from tokenweave.types import JobInfo, JobState
from tokenweave.workloads import (
    DocumentPlan,
    PlanContext,
)

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


@dataclass(frozen=True, slots=True)
class Completed:
    """A shard's result recorded: its job, whether that finished it, and the shards of the
    job's next stage that it started."""

    job: JobInfo
    finished: bool = False
    added: list[QueuedShard] = field(default_factory=list)


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
        rows = planned_rows(request, plan, workload.name, entry.sha256)
        for row in rows.shards:
            row.owner = self.owner if claimed else None
        await self._payloads.spill(rows.shards)
        async with self._sessions.begin() as session:
            await check_quota(session, self._limits.quota, request.owner, plan.tokens)
            session.add(rows.job)
            await session.flush()
            session.add_all(rows.documents)
            session.add_all(rows.shards)
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

    async def mark_leased(self, shard_id: str, node_id: str) -> bool:
        """Lease a pending shard of this coordinator's to a node; False if it is no longer
        pending or no longer this coordinator's. One statement, so that a coordinator taking
        this one's shards over at the same moment either sees the lease or prevents it."""
        now = utcnow()
        async with self._sessions.begin() as session:
            job_id = await session.scalar(
                update(ShardRow)
                .where(
                    ShardRow.shard_id == shard_id,
                    ShardRow.state == ShardState.PENDING,
                    ShardRow.owner == self.owner,
                )
                .values(
                    state=ShardState.LEASED,
                    node_id=node_id,
                    attempts=ShardRow.attempts + 1,
                    leased_at=now,
                )
                .returning(ShardRow.job_id)
            )
            if job_id is None:
                return False
            if job_id not in self._started:  # a job leaves QUEUED once, and never comes back
                await session.execute(
                    update(JobRow)
                    .where(JobRow.job_id == job_id, JobRow.state == JobState.QUEUED)
                    .values(state=JobState.RUNNING, started_at=now, version=JobRow.version + 1)
                )
        if len(self._started) >= STARTED_KEPT:
            self._started.clear()
        self._started.add(job_id)
        return True

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

    async def complete_shard(
        self, shard: QueuedShard, node_id: str, output: ShardOutput
    ) -> Completed:
        """Record a shard's accepted result, paid to `node_id` (the node that produced it; not
        necessarily the first lessee: a backup or a verifier may win), with its ledger row in
        the same transaction. When this was the last shard of its job, the job's workload plans
        its next stage (stored in the same transaction) or, with none, the job is merged."""
        usage = workloads.get(shard.workload).meter(shard.cost, shard.detail, output.output)
        async with self._sessions.begin() as session:
            row = await session.get(ShardRow, output.shard_id, with_for_update=True)
            if row is None or row.state != ShardState.LEASED or row.owner != self.owner:
                raise FailedPreconditionError(f"shard {output.shard_id} is no longer running")
            # Locked: coordinators completing the job's shards at once count them one by one.
            job = await session.get(JobRow, row.job_id, with_for_update=True)
            address = await session.scalar(
                update(NodeRow)
                .where(NodeRow.node_id == node_id)
                .values(
                    shards_done=NodeRow.shards_done + 1,
                    tokens_processed=NodeRow.tokens_processed + row.cost,
                )
                .returning(NodeRow.address)
            )
            assert job is not None
            assert address is not None
            row.state = ShardState.DONE
            row.node_id = node_id
            row.output = output.output
            row.digest = output.digest
            row.wall_seconds = output.wall_seconds
            row.provider = output.provider
            row.completed_at = utcnow()
            job.shards_done += 1
            job.tokens_processed += row.cost
            job.version += 1
            await self._ledger.append(session, row.shard_id, job.job_id, address, job.model, usage)
            if job.shards_done < job.shards_total:
                return Completed(job_from_row(job))
            await session.flush()
            added = await self._next_stage_or_merge(session, job)
            completed = Completed(job_from_row(job), finished=not added, added=added)
        if completed.finished:
            await self._payloads.forget(job.job_id)
        return completed

    async def _next_stage_or_merge(self, session: AsyncSession, job: JobRow) -> list[QueuedShard]:
        """Every task of the job is accepted: store the workload's next stage and return its
        shards; with no next stage, merge every document's result and finish the job."""
        shards = (
            await session.execute(
                select(ShardRow.detail, ShardRow.output, ShardRow.stage)
                .where(ShardRow.job_id == job.job_id, ShardRow.state == ShardState.DONE)
                .order_by(ShardRow.index)
            )
        ).all()
        tasks = [(detail, output) for detail, output, _ in shards if output is not None]
        docs = list(
            await session.scalars(
                select(DocumentRow)
                .where(DocumentRow.job_id == job.job_id)
                .order_by(DocumentRow.index)
            )
        )
        planned = [DocumentPlan(d.name, d.tokens, d.detail) for d in docs]
        workload = workloads.get(job.workload)
        # Worker threads: a large job's stage or merge is seconds of CPU the event loop (every
        # node's lease stream) must not wait on.
        more = await asyncio.to_thread(
            workload.next_stage, planned, tasks, self._context(job.model)
        )
        if more:
            stage = max(s for _, _, s in shards) + 1
            check_stage(workload.name, more, stage)
            first = await session.scalar(
                select(func.max(ShardRow.index)).where(ShardRow.job_id == job.job_id)
            )
            rows = [
                shard_row(job.job_id, (first or 0) + 1 + i, stage, task)
                for i, task in enumerate(more)
            ]
            for row in rows:
                row.owner = self.owner  # queued here at once
            await self._payloads.spill(rows)
            session.add_all(rows)
            job.shards_total += len(rows)
            return [queued_shard(r, job) for r in rows]
        merged = await asyncio.to_thread(workload.merge, planned, tasks)
        for doc, result in zip(docs, merged, strict=True):
            doc.result = tensors.pack(result)
        job.state = JobState.SUCCEEDED
        job.finished_at = utcnow()
        return []

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
