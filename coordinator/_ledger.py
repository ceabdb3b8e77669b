"""RewardLedger: the append-only ledger of earned rewards, closed into epochs.

The ledger is the only writer of its rows: `append` (one row per accepted shard, inside the
transaction that completes the shard) and `withhold` (an operator caught cheating earns nothing
in the open epoch) take the caller's session, so the work and its reward commit together.

Closing epoch N stamps every unassigned ledger row with N and records, for each operator that has
ever earned, its CUMULATIVE amount up to N: the leaves of the epoch's Merkle tree. An operator
claims its latest cumulative amount minus what it already claimed, so a missed epoch costs
nothing and no claim can be replayed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, delete, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import (
    EpochBalanceRow,
    EpochRow,
    LedgerRow,
    WithheldRow,
    chunked,
    utcnow,
)
from tokenweave.coordinator._metering import PriceList, micro_to_wei
from tokenweave.errors import FailedPreconditionError, NotFoundError
from tokenweave.types import EpochState
from tokenweave.workloads import Usage

#: The advisory lock key that closing an epoch takes on PostgreSQL ("twclose" as an integer).
CLOSE_EPOCH_LOCK = int.from_bytes(b"twclose", "big")


@dataclass(frozen=True, slots=True)
class Earned:
    """What one accepted shard earned its operator."""

    shard_id: str
    job_id: str
    address: str
    model: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class EpochView:
    epoch: int
    state: str
    root: str
    operators: int
    tokens: int
    amount_micro: int
    closed_at: dt.datetime
    tx_hash: str
    block_number: int | None
    settled_at: dt.datetime | None
    attempts: int
    last_error: str


@dataclass(frozen=True, slots=True)
class EpochEarning:
    epoch: int
    state: str
    tokens: int
    earned_micro: int
    cumulative_micro: int


@dataclass(frozen=True, slots=True)
class OperatorRewards:
    address: str
    tokens: int
    earned_micro: int
    unsettled_micro: int
    epochs: tuple[EpochEarning, ...]


@dataclass(frozen=True, slots=True)
class ClaimTicket:
    """What an operator needs to claim: its leaf in the latest root on chain, and the proof."""

    address: str
    epoch: int
    cumulative_wei: int
    proof: tuple[bytes, ...]
    root: bytes


#: Builds an epoch's Merkle tree: {address: cumulative wei} → (root, proof_of(address)).
TreeBuilder = Callable[[Mapping[str, int]], tuple[bytes, Callable[[str], Sequence[bytes]]]]


def _view(row: EpochRow) -> EpochView:
    return EpochView(
        epoch=row.epoch,
        state=row.state,
        root=row.root,
        operators=row.operators,
        tokens=row.tokens,
        amount_micro=row.amount_micro,
        closed_at=row.closed_at,
        tx_hash=row.tx_hash,
        block_number=row.block_number,
        settled_at=row.settled_at,
        attempts=row.attempts,
        last_error=row.last_error,
    )


class RewardLedger:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        build_tree: TreeBuilder,
        prices: PriceList,
    ) -> None:
        self._db = sessions
        self._build_tree = build_tree
        self.prices = prices

    async def append(
        self,
        session: AsyncSession,
        shard_id: str,
        job_id: str,
        address: str,
        model: str,
        usage: Usage,
    ) -> None:
        """`append_many` of one row."""
        await self.append_many(session, [Earned(shard_id, job_id, address, model, usage)])

    async def append_many(self, session: AsyncSession, earned: Sequence[Earned]) -> None:
        """The reward rows of accepted shards, in the caller's transaction (two reads however
        many rows). A shard is paid once (the database refuses a second row that is not
        withheld): one that ran again after its first operator was caught, and withheld, earns
        its new operator a row of its own. Withheld while the operator is caught this epoch."""
        if not earned:
            return
        earlier: dict[str, list[tuple[str, bool]]] = {}
        withheld_now: set[str] = set()
        for chunk in chunked([e.shard_id for e in earned]):
            rows = await session.execute(
                select(LedgerRow.shard_id, LedgerRow.address, LedgerRow.withheld).where(
                    LedgerRow.shard_id.in_(chunk)
                )
            )
            for shard_id, address, withheld in rows:
                earlier.setdefault(shard_id, []).append((address, withheld))
        for chunk in chunked(sorted({e.address for e in earned})):
            withheld_now.update(
                await session.scalars(
                    select(WithheldRow.address).where(WithheldRow.address.in_(chunk))
                )
            )
        now = utcnow()
        new: list[dict[str, object]] = []
        for e in earned:
            before = earlier.setdefault(e.shard_id, [])
            if any(a == e.address for a, _ in before):
                continue  # the same operator ran it again: recorded once already
            # Paid to someone else already (its operator was caught after the epoch closed):
            # this run is recorded, not paid again.
            withheld = any(not w for _, w in before) or e.address in withheld_now
            before.append((e.address, withheld))
            new.append(
                {
                    "shard_id": e.shard_id,
                    "job_id": e.job_id,
                    "address": e.address,
                    "model": e.model,
                    "tokens": e.usage.total,
                    "input_tokens": e.usage.input_tokens,
                    "output_tokens": e.usage.output_tokens,
                    "amount_micro": self.prices.reward_micro(e.model, e.usage),
                    "created_at": now,
                    "epoch": None,
                    "withheld": withheld,
                }
            )
        if new:  # one INSERT of many rows, not the ORM's unit of work
            await session.execute(insert(cast(Table, LedgerRow.__table__)), new)

    @staticmethod
    async def withhold(session: AsyncSession, address: str) -> None:
        """Withhold `address`'s rewards for the open epoch: rows already earned in it, and any
        more until it closes. In the caller's transaction."""
        if await session.get(WithheldRow, address) is None:
            session.add(WithheldRow(address=address, since=utcnow()))
        await session.execute(
            update(LedgerRow)
            .where(LedgerRow.address == address, LedgerRow.epoch.is_(None))
            .values(withheld=True)
        )

    async def withheld(self) -> set[str]:
        """Operators whose rewards for the open epoch are withheld."""
        async with self._db() as session:
            return set(await session.scalars(select(WithheldRow.address)))

    async def close_epoch(self) -> EpochView | None:
        """Close the open epoch; None when nothing was earned since the last one. Coordinators
        sharing a PostgreSQL database close one at a time (a transaction's advisory lock)."""
        async with self._db.begin() as session:
            if session.get_bind().dialect.name == "postgresql":
                await session.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLOSE_EPOCH_LOCK}
                )
            last = (await session.scalar(select(func.max(EpochRow.epoch)))) or 0
            epoch = last + 1
            stamped = await session.execute(
                update(LedgerRow).where(LedgerRow.epoch.is_(None)).values(epoch=epoch)
            )
            if stamped.rowcount == 0:  # type: ignore[attr-defined]
                return None
            # A node caught cheating in the epoch just closed earns again from the next one.
            await session.execute(delete(WithheldRow))
            earned = {
                address: (int(tokens), int(amount))
                for address, tokens, amount in await session.execute(
                    select(
                        LedgerRow.address,
                        func.sum(LedgerRow.tokens),
                        func.sum(LedgerRow.amount_micro),
                    )
                    .where(LedgerRow.epoch == epoch, LedgerRow.withheld.is_(False))
                    .group_by(LedgerRow.address)
                )
            }
            previous = {
                row.address: row
                for row in await session.scalars(
                    select(EpochBalanceRow).where(EpochBalanceRow.epoch == last)
                )
            }
            balances = []
            for address in sorted(set(earned) | set(previous)):
                tokens, amount = earned.get(address, (0, 0))
                before = previous[address].cumulative_micro if address in previous else 0
                balances.append(
                    EpochBalanceRow(
                        epoch=epoch,
                        address=address,
                        tokens=tokens,
                        earned_micro=amount,
                        cumulative_micro=before + amount,
                    )
                )
            root, _ = self._build_tree(
                {b.address: micro_to_wei(b.cumulative_micro) for b in balances}
            )
            row = EpochRow(
                epoch=epoch,
                state=EpochState.CLOSED,
                closed_at=utcnow(),
                root="0x" + root.hex(),
                operators=len(balances),
                tokens=sum(t for t, _ in earned.values()),
                amount_micro=sum(a for _, a in earned.values()),
                tx_hash="",
                block_number=None,
                posted_at=None,
                settled_at=None,
                attempts=0,
                last_error="",
            )
            session.add(row)
            await session.flush()
            session.add_all(balances)
            return _view(row)

    async def epochs(self, states: Sequence[str] = ()) -> list[EpochView]:
        async with self._db() as session:
            query = select(EpochRow).order_by(EpochRow.epoch)
            if states:
                query = query.where(EpochRow.state.in_(states))
            return [_view(r) for r in await session.scalars(query)]

    async def last_closed_at(self) -> dt.datetime | None:
        async with self._db() as session:
            return await session.scalar(select(func.max(EpochRow.closed_at)))

    async def _update(self, epoch: int, **values: object) -> EpochView:
        async with self._db.begin() as session:
            row = await session.get(EpochRow, epoch)
            if row is None:
                raise NotFoundError(f"no epoch {epoch}")
            for name, value in values.items():
                setattr(row, name, value)
            return _view(row)

    async def mark_posted(self, epoch: int, tx_hash: str, block_number: int | None) -> EpochView:
        return await self._update(
            epoch,
            state=EpochState.POSTED,
            tx_hash=tx_hash,
            block_number=block_number,
            posted_at=utcnow(),
            last_error="",
        )

    async def mark_settled(self, epoch: int) -> None:
        await self._update(epoch, state=EpochState.SETTLED, settled_at=utcnow())

    async def mark_unposted(self, epoch: int, error: str) -> None:
        """The posting transaction vanished (a reorg): the root must be posted again."""
        await self._update(
            epoch, state=EpochState.CLOSED, tx_hash="", block_number=None, last_error=error
        )

    async def record_failure(self, epoch: int, error: str) -> None:
        async with self._db.begin() as session:
            row = await session.get(EpochRow, epoch)
            if row is not None:
                row.attempts += 1
                row.last_error = error

    async def rewards(self, address: str) -> OperatorRewards:
        async with self._db() as session:
            totals = (
                await session.execute(
                    select(
                        func.coalesce(func.sum(LedgerRow.tokens), 0),
                        func.coalesce(func.sum(LedgerRow.amount_micro), 0),
                    ).where(LedgerRow.address == address, LedgerRow.withheld.is_(False))
                )
            ).one()
            unsettled = await session.scalar(
                select(func.coalesce(func.sum(LedgerRow.amount_micro), 0)).where(
                    LedgerRow.address == address,
                    LedgerRow.epoch.is_(None),
                    LedgerRow.withheld.is_(False),
                )
            )
            rows = await session.execute(
                select(EpochBalanceRow, EpochRow.state)
                .join(EpochRow, EpochRow.epoch == EpochBalanceRow.epoch)
                .where(EpochBalanceRow.address == address)
                .order_by(EpochBalanceRow.epoch)
            )
            epochs = tuple(
                EpochEarning(b.epoch, state, b.tokens, b.earned_micro, b.cumulative_micro)
                for b, state in rows
            )
        return OperatorRewards(address, int(totals[0]), int(totals[1]), int(unsettled or 0), epochs)

    async def claim_ticket(self, address: str) -> ClaimTicket:
        """The proof for the latest root on chain (posted or settled)."""
        async with self._db() as session:
            latest = await session.scalar(
                select(EpochRow)
                .where(EpochRow.state.in_([EpochState.POSTED, EpochState.SETTLED]))
                .order_by(EpochRow.epoch.desc())
                .limit(1)
            )
            if latest is None:
                raise FailedPreconditionError("no epoch has been posted on chain yet")
            leaves = {
                b.address: micro_to_wei(b.cumulative_micro)
                for b in await session.scalars(
                    select(EpochBalanceRow).where(EpochBalanceRow.epoch == latest.epoch)
                )
            }
        if address not in leaves:
            raise NotFoundError(f"{address} has earned nothing up to epoch {latest.epoch}")
        root, proof_of = self._build_tree(leaves)
        if "0x" + root.hex() != latest.root:
            raise FailedPreconditionError(
                f"epoch {latest.epoch}: the rebuilt tree does not match its root"
            )
        return ClaimTicket(address, latest.epoch, leaves[address], tuple(proof_of(address)), root)
