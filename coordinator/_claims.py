"""Several coordinators, one database: which of them are alive, and which shards each one runs.

A coordinator is an instance with an id of its own, kept in its data dir, so that a restart is
the same instance and takes its shards back at once. Each writes a heartbeat into `coordinators`
every liveness round. A shard is run by the coordinator that claimed it (`shards.owner`): `claim`
takes unowned pending shards of unfinished jobs, oldest job first, with `SELECT … FOR UPDATE
SKIP LOCKED` on PostgreSQL, so that two coordinators never claim the same shard and neither
waits on rows the other is claiming. Every write of the dispatcher to a shard is fenced by its
owner (`JobStore`): a coordinator that was taken for dead and comes back can neither lease nor
complete what another one holds by then.

A coordinator whose heartbeat is older than the TTL is dead: the first living one to notice
gives its shards back (those leased to its nodes pending again) for the living to claim. One
coordinator alone claims everything; with several, each claims what its own nodes can start
soon (`claim_limit`), so that a job submitted to any of them spreads over all of their nodes.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._convert import queued_shard
from tokenweave.coordinator._db import CoordinatorRow, JobRow, ShardRow, utcnow
from tokenweave.coordinator._views import QueuedShard, ShardState
from tokenweave.types import JobState

logger = logging.getLogger(__name__)

#: Shards one claim statement takes at most (a coordinator alone claims in rounds of these).
CLAIM_CHUNK = 2_000
#: With other coordinators alive, a coordinator keeps this many shards queued per slot of its
#: nodes (enough to keep them busy between two claims, few enough to leave the rest to others).
QUEUED_PER_SLOT = 2
_ID = re.compile(r"[0-9a-f]{16}")
_UNFINISHED = (JobState.QUEUED, JobState.RUNNING)


def instance_id(data_dir: Path) -> str:
    """This coordinator's id: made once, then read from `<data_dir>/coordinator_id`."""
    path = data_dir / "coordinator_id"
    try:
        value = path.read_text(encoding="ascii").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        value = ""
    if not _ID.fullmatch(value):
        value = secrets.token_hex(8)
        data_dir.mkdir(parents=True, exist_ok=True)
        scratch = path.with_suffix(".tmp")
        scratch.write_text(value + "\n", encoding="ascii")
        scratch.replace(path)
    return value


def claim_limit(alone: bool, slots: int, queued: int) -> int | None:
    """How many more shards to claim: all of them (None) for a coordinator alone, else enough
    to hold `QUEUED_PER_SLOT` a slot of its nodes (`slots`), counting the `queued` it holds."""
    if alone:
        return None
    return max(QUEUED_PER_SLOT * slots - queued, 0)


class Instances:
    """This coordinator's row among the instances sharing the database, and its claims."""

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], coordinator_id: str, ttl_s: float
    ) -> None:
        self._sessions = sessions
        self.coordinator_id = coordinator_id
        self._ttl = dt.timedelta(seconds=ttl_s)
        self._started = utcnow()
        #: Coordinators alive at the last beat, this one included.
        self.alive_count = 1
        #: Called when shards are put up for claiming (the other coordinators are told).
        self.announce: Callable[[], None] = lambda: None

    @property
    def alone(self) -> bool:
        return self.alive_count <= 1

    async def beat(self, address: str) -> int:
        """Write this instance's heartbeat; returns how many coordinators are alive."""
        now = utcnow()
        async with self._sessions.begin() as session:
            beat = await session.execute(
                update(CoordinatorRow)
                .where(CoordinatorRow.coordinator_id == self.coordinator_id)
                .values(address=address, heartbeat_at=now)
            )
            if beat.rowcount == 0:  # type: ignore[attr-defined]
                await session.execute(
                    insert(CoordinatorRow).values(
                        coordinator_id=self.coordinator_id,
                        address=address,
                        started_at=self._started,
                        heartbeat_at=now,
                    )
                )
            alive = await session.scalar(
                select(func.count()).where(CoordinatorRow.heartbeat_at >= now - self._ttl)
            )
        self.alive_count = max(int(alive or 0), 1)
        return self.alive_count

    async def take_over_dead(self) -> int:
        """Give the shards of every coordinator whose heartbeat is older than the TTL back to
        the living (those leased to its nodes pending again, all unowned), and forget it;
        returns how many shards came back."""
        async with self._sessions.begin() as session:
            dead = list(
                await session.scalars(
                    select(CoordinatorRow.coordinator_id).where(
                        CoordinatorRow.heartbeat_at < utcnow() - self._ttl,
                        CoordinatorRow.coordinator_id != self.coordinator_id,
                    )
                )
            )
            # Leased to no one's name (a database from before coordinators shared one, whose
            # leases were the dead process's): pending again.
            orphans = await session.execute(
                update(ShardRow)
                .where(ShardRow.owner.is_(None), ShardRow.state == ShardState.LEASED)
                .values(state=ShardState.PENDING, node_id=None, leased_at=None)
            )
            if orphans.rowcount:  # type: ignore[attr-defined]
                self.announce()
            if not dead:
                return 0
            back = await self._disown(session, dead)
            await session.execute(
                delete(CoordinatorRow).where(CoordinatorRow.coordinator_id.in_(dead))
            )
        if back:
            self.announce()
        logger.warning(
            "coordinator(s) %s stopped beating: %d of their shards are up for claiming",
            ", ".join(dead),
            back,
        )
        return back

    async def leave(self) -> int:
        """On a clean shutdown: give this instance's shards back and remove its row."""
        async with self._sessions.begin() as session:
            back = await self._disown(session, [self.coordinator_id])
            await session.execute(
                delete(CoordinatorRow).where(CoordinatorRow.coordinator_id == self.coordinator_id)
            )
        if back:
            self.announce()
        return back

    @staticmethod
    async def _disown(session: AsyncSession, owners: Sequence[str]) -> int:
        """Unfinished shards of `owners` pending and unowned, in one statement: a lease the
        owner makes at the same moment is either undone with the rest or not there yet (two
        statements once left a shard leased to no one, which nobody would ever run)."""
        disowned = await session.execute(
            update(ShardRow)
            .where(
                ShardRow.owner.in_(owners),
                ShardRow.state.in_([ShardState.PENDING, ShardState.LEASED]),
            )
            .values(state=ShardState.PENDING, node_id=None, leased_at=None, owner=None)
        )
        return int(disowned.rowcount)  # type: ignore[attr-defined]

    async def claim(self, limit: int | None) -> list[QueuedShard]:
        """Claim unowned pending shards of unfinished jobs, oldest job first: `limit` at most
        (None: every one). Rows another coordinator is claiming at the same moment are skipped,
        not waited for (PostgreSQL's SKIP LOCKED; SQLite has one writer at a time anyway)."""
        claimed: list[QueuedShard] = []
        while limit is None or len(claimed) < limit:
            chunk = CLAIM_CHUNK if limit is None else min(CLAIM_CHUNK, limit - len(claimed))
            taken = await self._claim_chunk(chunk)
            claimed.extend(taken)
            if len(taken) < chunk:
                break
        return claimed

    async def _claim_chunk(self, limit: int) -> list[QueuedShard]:
        pick = (
            select(ShardRow.shard_id)
            .join(JobRow, JobRow.job_id == ShardRow.job_id)
            .where(
                ShardRow.state == ShardState.PENDING,
                ShardRow.owner.is_(None),
                JobRow.state.in_(_UNFINISHED),
            )
            .order_by(JobRow.created_at, ShardRow.index)
            .limit(limit)
            .with_for_update(of=ShardRow, skip_locked=True)
            # Materialized, so that it runs once: as a plain subquery of the UPDATE, PostgreSQL
            # may run it again per row, and LIMIT then bounds nothing.
            .cte("picked")
            .prefix_with("MATERIALIZED", dialect="postgresql")
        )
        async with self._sessions.begin() as session:
            shards = list(
                await session.scalars(
                    update(ShardRow)
                    .where(ShardRow.shard_id == pick.c.shard_id, ShardRow.owner.is_(None))
                    .values(owner=self.coordinator_id)
                    .returning(ShardRow)
                    .execution_options(synchronize_session=False)
                )
            )
            if not shards:
                return []
            jobs = {
                job.job_id: job
                for job in await session.scalars(
                    select(JobRow).where(JobRow.job_id.in_({s.job_id for s in shards}))
                )
            }
        shards.sort(key=lambda s: (jobs[s.job_id].created_at, s.job_id, s.index))
        return [queued_shard(s, jobs[s.job_id]) for s in shards]
