"""Per-client quotas: what one client (an API key's owner) may ask of the network at once and
per hour. Checked before a job is planned and again in the transaction that stores it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tokenweave.coordinator._db import JobRow, utcnow
from tokenweave.errors import ResourceExhaustedError
from tokenweave.types import JobState


@dataclass(frozen=True, slots=True)
class ClientQuota:
    """What one client (an API key's owner) may ask of the network."""

    #: Jobs queued or running at once.
    max_concurrent_jobs: int = 8
    #: Model tokens one job may plan.
    max_tokens_per_job: int = 20_000_000
    #: Model tokens of the jobs it submitted in the last hour, this one included.
    max_tokens_per_hour: int = 100_000_000


async def check_quota(
    session: AsyncSession, quota: ClientQuota, owner: str, tokens: int | None
) -> None:
    """RESOURCE_EXHAUSTED when a new job of `owner`'s (of `tokens`, once planned) would
    pass its quota."""
    running = await session.scalar(
        select(func.count())
        .select_from(JobRow)
        .where(JobRow.owner == owner, JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]))
    )
    if (running or 0) >= quota.max_concurrent_jobs:
        raise ResourceExhaustedError(
            f"client {owner or '(none)'} has {running} jobs queued or running; the quota is "
            f"{quota.max_concurrent_jobs} (coordinator --max-concurrent-jobs)"
        )
    if tokens is None:
        return
    if tokens > quota.max_tokens_per_job:
        raise ResourceExhaustedError(
            f"the job is {tokens} model tokens; the quota is {quota.max_tokens_per_job} a "
            "job (coordinator --max-tokens-per-job)"
        )
    since = utcnow() - dt.timedelta(hours=1)
    recent = await session.scalar(
        select(func.coalesce(func.sum(JobRow.tokens), 0)).where(
            JobRow.owner == owner, JobRow.created_at >= since
        )
    )
    if int(recent or 0) + tokens > quota.max_tokens_per_hour:
        raise ResourceExhaustedError(
            f"client {owner or '(none)'} submitted {recent} model tokens in the last hour; "
            f"this job's {tokens} would pass the quota of {quota.max_tokens_per_hour} an "
            "hour (coordinator --max-tokens-per-hour)"
        )
