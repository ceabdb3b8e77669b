"""A node caught returning a wrong output: the results it gave that nobody checked run again."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tokenweave.coordinator._convert import queued_shard
from tokenweave.coordinator._db import JobRow, ShardRow, VerificationRow
from tokenweave.coordinator._views import QueuedShard, ShardState
from tokenweave.types import JobState


@dataclass(frozen=True, slots=True)
class Reopened:
    """Shards that run again after their node was caught, and the later-stage shards built on
    their outputs, withdrawn."""

    shards: list[QueuedShard]
    withdrawn: list[str]


async def reopen_unverified(session: AsyncSession, node_id: str, owner: str) -> Reopened:
    """Put back in the queue every shard of an unfinished job that `node_id` completed
    without another node agreeing with it (it was just caught returning a wrong output:
    its unchecked results are not trusted either). Their ledger rows stay, withheld with
    the rest of the node's epoch; the new result earns its own operator. A later stage
    built on a reopened shard's output is withdrawn with it (its shards cancelled), to be
    planned again from the new result. The reopened shards become `owner`'s. In the caller's
    transaction."""
    agreed = select(VerificationRow.shard_id).where(
        VerificationRow.node_id == node_id, VerificationRow.agreed.is_(True)
    )
    rows = (
        await session.execute(
            select(ShardRow, JobRow)
            .join(JobRow, JobRow.job_id == ShardRow.job_id)
            .where(
                ShardRow.node_id == node_id,
                ShardRow.state == ShardState.DONE,
                JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]),
                ShardRow.shard_id.not_in(agreed),
            )
            .order_by(JobRow.created_at, ShardRow.index)
            .with_for_update()
        )
    ).all()
    first_stage: dict[str, tuple[JobRow, int]] = {}
    for shard, job in rows:
        _undo(job, shard, ShardState.PENDING)
        shard.owner = owner  # they run again there
        if job.job_id not in first_stage or shard.stage < first_stage[job.job_id][1]:
            first_stage[job.job_id] = (job, shard.stage)
    withdrawn: list[str] = []
    for job, stage in first_stage.values():
        later = await session.scalars(
            select(ShardRow).where(
                ShardRow.job_id == job.job_id,
                ShardRow.stage > stage,
                ShardRow.state != ShardState.CANCELLED,
            )
        )
        for shard in later:
            _undo(job, shard, ShardState.CANCELLED)
            job.shards_total -= 1
            withdrawn.append(shard.shard_id)
    again = [queued_shard(s, j) for s, j in rows if s.state == ShardState.PENDING]
    return Reopened(again, withdrawn)


def _undo(job: JobRow, shard: ShardRow, state: ShardState) -> None:
    """Take a shard's result (if any) out of its job's progress and give it `state`."""
    if shard.state == ShardState.DONE:
        job.shards_done -= 1
        job.tokens_processed -= shard.cost
    shard.state = state
    shard.node_id = None
    shard.output = None
    shard.digest = ""
    shard.leased_at = None
    shard.completed_at = None
    job.version += 1
