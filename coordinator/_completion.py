"""Recording accepted results: a batch of shards done in one transaction.

The dispatcher accepts results as nodes send them and hands the store every result accepted
while the previous batch was being written (`Dispatcher._take_results`). One transaction records
them all in a fixed number of statements however many there are — lock the shards, lock their
jobs, count each node's work, write the shards, append the ledger rows — where a transaction a
shard cost ten statements each and capped a coordinator near a hundred shards a second.

Each result still succeeds or fails on its own: a shard no longer this coordinator's to finish
(taken over, cancelled), a result the workload cannot meter, or a job whose next stage or merge
fails gives that result its error while the rest of the batch commits. Only the database failing
fails the whole batch.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tokenweave import tensors, workloads
from tokenweave.coordinator._convert import job_from_row, queued_shard
from tokenweave.coordinator._db import (
    DocumentRow,
    JobRow,
    NodeRow,
    ShardRow,
    chunked,
    utcnow,
)
from tokenweave.coordinator._ledger import Earned, RewardLedger
from tokenweave.coordinator._payloads import Payloads
from tokenweave.coordinator._planned import check_stage, insert_rows, shard_row
from tokenweave.coordinator._views import QueuedShard, ShardOutput, ShardState
from tokenweave.errors import FailedPreconditionError
from tokenweave.types import JobInfo, JobState
from tokenweave.workloads import DocumentPlan, PlanContext, Usage


@dataclass(frozen=True, slots=True)
class Accepted:
    """A shard's accepted result, paid to `node_id`: the node that produced it, not
    necessarily the first lessee (a backup or a verifier may win)."""

    shard: QueuedShard
    node_id: str
    output: ShardOutput


@dataclass(frozen=True, slots=True)
class Completed:
    """A shard's result recorded: its job, whether that finished it, and the shards of the
    job's next stage that it started."""

    job: JobInfo
    finished: bool = False
    added: list[QueuedShard] = field(default_factory=list)


_NODES = cast(Table, NodeRow.__table__)
_SHARDS = cast(Table, ShardRow.__table__)
#: Per node: one UPDATE run with every node's figures (executemany).
_COUNT_WORK = (
    update(_NODES)
    .where(_NODES.c.node_id == bindparam("b_node"))
    .values(
        shards_done=_NODES.c.shards_done + bindparam("b_shards"),
        tokens_processed=_NODES.c.tokens_processed + bindparam("b_tokens"),
    )
)

#: Per shard: one UPDATE run with every result (executemany), not the ORM's unit of work.
_DONE = (
    update(_SHARDS)
    .where(_SHARDS.c.shard_id == bindparam("b_shard"))
    .values(
        state=ShardState.DONE,
        node_id=bindparam("b_node"),
        output=bindparam("b_output"),
        digest=bindparam("b_digest"),
        wall_seconds=bindparam("b_wall"),
        provider=bindparam("b_provider"),
        completed_at=bindparam("b_at"),
    )
)


@dataclass(frozen=True, slots=True)
class _Row:
    """What a batch needs of a shard's row."""

    shard_id: str
    job_id: str
    cost: int


class Completions:
    """Writes batches of accepted results for one coordinator (`owner`: it finishes only the
    shards it holds)."""

    def __init__(
        self,
        owner: str,
        ledger: RewardLedger,
        payloads: Payloads,
        context: Callable[[str], PlanContext],
    ) -> None:
        self._owner = owner
        self._ledger = ledger
        self._payloads = payloads
        self._context = context

    async def record(
        self, session: AsyncSession, accepted: Sequence[Accepted]
    ) -> list[Completed | Exception]:
        """Record the results in the caller's transaction; each gets its `Completed` or its
        error. When a result is its job's last, the job's workload plans its next stage
        (stored in the same transaction) or, with none, the job is merged."""
        outcome: list[Completed | Exception | None] = [None] * len(accepted)
        usages: dict[int, Usage] = {}
        for i, a in enumerate(accepted):
            try:
                usages[i] = workloads.get(a.shard.workload).meter(
                    a.shard.cost, a.shard.detail, a.output.output
                )
            except Exception as exc:  # the workload's meter: this result only
                outcome[i] = exc
        ids = sorted({accepted[i].shard.shard_id for i in usages})
        # Locked in one order (shards, then their jobs, each by id): coordinators completing
        # one job's shards at once count them one by one and never deadlock.
        shards: dict[str, tuple[str, str | None, str, int]] = {}
        for chunk in chunked(ids):
            rows = await session.execute(
                select(ShardRow.shard_id, ShardRow.state, ShardRow.owner, ShardRow.job_id,
                       ShardRow.cost)
                .where(ShardRow.shard_id.in_(chunk))
                .order_by(ShardRow.shard_id)
                .with_for_update()
            )  # fmt: skip
            shards.update((row[0], row[1:]) for row in rows)
        mine: dict[int, _Row] = {}
        for i in usages:
            shard_id = accepted[i].output.shard_id
            found = shards.pop(shard_id, None)  # popped: a second result for it is refused
            if found is None or found[0] != ShardState.LEASED or found[1] != self._owner:
                outcome[i] = FailedPreconditionError(f"shard {shard_id} is no longer running")
            else:
                mine[i] = _Row(shard_id, found[2], found[3])
        jobs: dict[str, JobRow] = {}
        for chunk in chunked(sorted({row.job_id for row in mine.values()})):
            locked = await session.scalars(
                select(JobRow)
                .where(JobRow.job_id.in_(chunk))
                .order_by(JobRow.job_id)
                .with_for_update()
            )
            jobs.update((job.job_id, job) for job in locked)
        addresses = await self._count_work(session, {i: accepted[i] for i in mine}, mine)
        now = utcnow()
        done, earned = [], []
        for i, row in mine.items():
            a, job = accepted[i], jobs[row.job_id]
            done.append(
                {
                    "b_shard": row.shard_id,
                    "b_node": a.node_id,
                    "b_output": a.output.output,
                    "b_digest": a.output.digest,
                    "b_wall": a.output.wall_seconds,
                    "b_provider": a.output.provider,
                    "b_at": now,
                }
            )
            job.shards_done += 1
            job.tokens_processed += row.cost
            earned.append(
                Earned(row.shard_id, job.job_id, addresses[a.node_id], job.model, usages[i])
            )
        if done:
            await session.execute(_DONE, done)
        await self._ledger.append_many(session, earned)
        for job in jobs.values():
            job.version += 1
        ended = await self._finish_jobs(session, jobs)
        last = {row.job_id: i for i, row in mine.items()}  # the result that finished its job
        views = {job_id: job_from_row(job) for job_id, job in jobs.items()}
        for i, row in mine.items():
            end = ended.get(row.job_id)
            if isinstance(end, Exception):
                outcome[i] = end
            elif end is not None and last[row.job_id] == i:
                outcome[i] = Completed(views[row.job_id], finished=not end, added=end)
            else:
                outcome[i] = Completed(views[row.job_id])
        assert all(o is not None for o in outcome)
        return [o for o in outcome if o is not None]

    async def _count_work(
        self, session: AsyncSession, accepted: dict[int, Accepted], rows: dict[int, _Row]
    ) -> dict[str, str]:
        """Each paid node's shards and tokens counted; returns the nodes' reward addresses."""
        shards: Counter[str] = Counter()
        tokens: Counter[str] = Counter()
        for i, a in accepted.items():
            shards[a.node_id] += 1
            tokens[a.node_id] += rows[i].cost
        if not shards:
            return {}
        await session.execute(
            _COUNT_WORK,
            [{"b_node": n, "b_shards": shards[n], "b_tokens": tokens[n]} for n in sorted(shards)],
        )
        addresses: dict[str, str] = {}
        for chunk in chunked(sorted(shards)):
            rows_ = await session.execute(
                select(NodeRow.node_id, NodeRow.address).where(NodeRow.node_id.in_(chunk))
            )
            addresses.update((node_id, address) for node_id, address in rows_)
        missing = set(shards) - set(addresses)
        if missing:  # a node row is written at registration and never deleted
            raise FailedPreconditionError(f"no node row for {', '.join(sorted(missing))}")
        return addresses

    async def _finish_jobs(
        self, session: AsyncSession, jobs: dict[str, JobRow]
    ) -> dict[str, list[QueuedShard] | Exception]:
        """For each job whose every task is accepted now: its next stage's shards (none: it was
        merged and succeeded), or the error that stopped that."""
        done = [j for j in jobs.values() if j.shards_done >= j.shards_total]
        if not done:
            return {}
        await session.flush()
        ended: dict[str, list[QueuedShard] | Exception] = {}
        for job in done:
            try:
                ended[job.job_id] = await self._next_stage_or_merge(session, job)
            except Exception as exc:  # the workload's plan or merge: this job only
                ended[job.job_id] = exc
        return ended

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
            rows = [  # queued here at once
                shard_row(job.job_id, (first or 0) + 1 + i, stage, task, self._owner)
                for i, task in enumerate(more)
            ]
            await self._payloads.spill(rows)
            await insert_rows(session, (), rows)
            job.shards_total += len(rows)
            return [queued_shard(r, job) for r in rows]
        merged = await asyncio.to_thread(workload.merge, planned, tasks)
        for doc, result in zip(docs, merged, strict=True):
            doc.result = tensors.pack(result)
        job.state = JobState.SUCCEEDED
        job.finished_at = utcnow()
        return []
