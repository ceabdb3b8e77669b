"""Which nodes did a job's shards so far, and how many tokens each: a job's `NodeShare`s."""

from __future__ import annotations

import time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tokenweave.coordinator._db import JobRow, NodeRow, ShardRow
from tokenweave.coordinator._views import ShardState
from tokenweave.types import JobState, NodeShare

#: A running job's node shares are counted again after this many seconds at the earliest.
NODE_SHARES_EVERY_S = 2.0
#: Running jobs whose shares are kept at most (forgotten all at once past it: jobs that
#: finished on another coordinator are never asked for again here).
NODE_SHARES_CACHED = 1024


class NodeShares:
    """Counts a job's node shares, keeping running jobs' counts for a while (`count`)."""

    def __init__(self) -> None:
        #: Running jobs' node shares, with when they were counted.
        self._shares: dict[str, tuple[float, list[NodeShare]]] = {}

    async def count(self, session: AsyncSession, row: JobRow) -> list[NodeShare]:
        """The nodes that did the job's shards so far: counted afresh once it has finished,
        at most every NODE_SHARES_EVERY_S seconds while it runs (the count reads every shard
        done, and a job's watchers ask after each change)."""
        job_id, now = row.job_id, time.monotonic()
        cached = self._shares.get(job_id)
        finished = JobState(row.state).finished
        if cached is not None and not finished and now - cached[0] < NODE_SHARES_EVERY_S:
            return cached[1]
        rows = await session.execute(
            select(ShardRow.node_id, NodeRow.address, func.count(), func.sum(ShardRow.cost))
            .join(NodeRow, NodeRow.node_id == ShardRow.node_id)
            .where(ShardRow.job_id == job_id, ShardRow.state == ShardState.DONE)
            .group_by(ShardRow.node_id, NodeRow.address)
            .order_by(ShardRow.node_id)
        )
        shares = [NodeShare(n, a, int(c), int(t)) for n, a, c, t in rows.all() if n is not None]
        if finished:
            self._shares.pop(job_id, None)
        else:
            if len(self._shares) >= NODE_SHARES_CACHED:
                self._shares.clear()
            self._shares[job_id] = (now, shares)
        return shares
