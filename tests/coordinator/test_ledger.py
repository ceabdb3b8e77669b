"""Ledger and settlement on a real SQLite database, with a scripted chain (a unit test)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import LedgerRow, open_database
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._metering import PriceList, format_micro, micro_to_wei
from tokenweave.coordinator._settlement import EpochSettler, SettlementPolicy
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError
from tokenweave.types import EpochState
from tokenweave.workloads import Usage


def _tree(leaves: Mapping[str, int]) -> tuple[bytes, Callable[[str], Sequence[bytes]]]:
    digest = hashlib.sha256(repr(sorted(leaves.items())).encode()).digest()
    return digest, lambda address: [hashlib.sha256(address.encode()).digest()]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    yield sessions
    await engine.dispose()


PRICES = PriceList({"m": 2_000_000})


async def _earn(
    db: async_sessionmaker[AsyncSession], shard: str, address: str, tokens: int
) -> None:
    """A shard's reward, written as the job store writes it: through the ledger."""
    async with db.begin() as session:
        await RewardLedger(db, _tree, PRICES).append(
            session, shard, "j", address, "m", Usage(tokens)
        )


def test_prices() -> None:
    prices = PriceList.parse(["all-minilm-l6-v2=1.5", "other=0.000001"])
    assert prices.reward_micro("all-minilm-l6-v2", Usage(1000)) == 1_500_000
    assert prices.reward_micro("other", Usage(999)) == 0  # rounded down to the micro-token
    assert format_micro(1_500_000) == "1.5"
    assert micro_to_wei(1) == 10**12
    with pytest.raises(NotFoundError, match="no price for model 'x'"):
        prices.reward_micro("x", Usage(1))
    for bad in ("nomodel", "m=abc", "m=-1", "m=0.0000001", "m=1/2/3", "m=1/x"):
        with pytest.raises(InvalidArgumentError, match="MODEL=TOKENS_PER_1000"):
            PriceList.parse([bad])
    split = PriceList.parse(["llm=0.2/0.8"])  # prompt tokens, generated tokens
    assert split.reward_micro("llm", Usage(input_tokens=1000, output_tokens=500)) == 600_000


async def test_cumulative_leaves_across_epochs(db: async_sessionmaker[AsyncSession]) -> None:
    ledger = RewardLedger(db, _tree, PRICES)
    assert await ledger.close_epoch() is None  # nothing earned yet
    await _earn(db, "s1", "0xa", 1000)
    await _earn(db, "s2", "0xb", 500)
    first = await ledger.close_epoch()
    assert first is not None
    assert (first.epoch, first.operators, first.tokens, first.amount_micro) == (
        1,
        2,
        1500,
        3_000_000,
    )
    await _earn(db, "s3", "0xa", 250)
    second = await ledger.close_epoch()
    assert second is not None
    assert (second.epoch, second.operators, second.amount_micro) == (2, 2, 500_000)

    a = await ledger.rewards("0xa")
    assert (a.tokens, a.earned_micro, a.unsettled_micro) == (1250, 2_500_000, 0)
    assert [(e.epoch, e.earned_micro, e.cumulative_micro) for e in a.epochs] == [
        (1, 2_000_000, 2_000_000),
        (2, 500_000, 2_500_000),
    ]
    b = await ledger.rewards("0xb")
    assert [(e.epoch, e.earned_micro, e.cumulative_micro) for e in b.epochs] == [
        (1, 1_000_000, 1_000_000),
        (2, 0, 1_000_000),
    ]


async def test_the_database_refuses_to_pay_a_shard_twice(
    db: async_sessionmaker[AsyncSession],
) -> None:
    """Even a writer that bypasses `append`'s checks cannot pay one shard twice."""
    await _earn(db, "s1", "0xa", 10)
    for address, withheld in (("0xb", False), ("0xa", True)):
        with pytest.raises(IntegrityError):
            async with db.begin() as session:
                session.add(
                    LedgerRow(
                        shard_id="s1",
                        job_id="j",
                        address=address,
                        model="m",
                        tokens=10,
                        amount_micro=1,
                        withheld=withheld,
                    )
                )


async def test_a_shard_run_again_after_a_catch_pays_its_new_operator_only(
    db: async_sessionmaker[AsyncSession],
) -> None:
    ledger = RewardLedger(db, _tree, PRICES)
    await _append(db, ledger, "s1", "0xcheat", 10)
    async with db.begin() as session:
        await ledger.withhold(session, "0xcheat")
    await _append(db, ledger, "s1", "0xcheat", 10)  # the same operator again: nothing new
    await _append(db, ledger, "s1", "0xhonest", 10)
    await _append(db, ledger, "s2", "0xhonest", 10)
    await ledger.close_epoch()  # the honest row of s2 is paid in epoch 1
    async with db.begin() as session:
        await ledger.withhold(session, "0xhonest")  # ... caught later: s2 ran again
    await _append(db, ledger, "s2", "0xthird", 10)
    async with db() as session:
        rows = (
            await session.execute(
                select(LedgerRow.shard_id, LedgerRow.address, LedgerRow.withheld).order_by(
                    LedgerRow.id
                )
            )
        ).all()
    assert [tuple(r) for r in rows] == [
        ("s1", "0xcheat", True),
        ("s1", "0xhonest", False),
        ("s2", "0xhonest", False),
        ("s2", "0xthird", True),  # s2 was paid in a closed epoch: recorded, not paid twice
    ]


async def _append(
    db: async_sessionmaker[AsyncSession], ledger: RewardLedger, shard: str, address: str, n: int
) -> None:
    async with db.begin() as session:
        await ledger.append(session, shard, "job", address, "m", Usage(n, 0))


class ScriptedChain:
    def __init__(self) -> None:
        self.posted: dict[int, bytes] = {}
        self.sent = 0
        self.failures = 0
        self.depth = 1
        self.lost: set[str] = set()

    def post_root(self, epoch: int, root: bytes, amount_wei: int) -> tuple[str, int | None]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("chain is away")
        if self.posted.get(epoch) != root:
            self.posted[epoch] = root
            self.sent += 1
        return f"0x{epoch:064x}", epoch

    def confirmations(self, tx_hash: str) -> int | None:
        return None if tx_hash in self.lost else self.depth


async def test_settlement_posts_once_retries_and_waits_for_confirmations(
    db: async_sessionmaker[AsyncSession],
) -> None:
    ledger = RewardLedger(db, _tree, PRICES)
    chain = ScriptedChain()
    policy = SettlementPolicy(epoch_seconds=0, confirmations=3, backoff_initial_s=0.0)
    settler = EpochSettler(ledger, chain, policy)
    await _earn(db, "s1", "0xa", 10)
    await settler.close_epoch()

    chain.failures = 1
    await settler.step()
    [epoch] = await ledger.epochs()
    assert (epoch.state, epoch.attempts, chain.sent) == (EpochState.CLOSED, 1, 0)
    assert "chain is away" in epoch.last_error

    await settler.step()
    [epoch] = await ledger.epochs()
    assert (epoch.state, chain.sent) == (EpochState.POSTED, 1)

    chain.depth = 3
    await settler.step()
    [epoch] = await ledger.epochs()
    assert epoch.state == EpochState.SETTLED

    # A restart that replays the step posts nothing new.
    await EpochSettler(ledger, chain, policy).step()
    assert chain.sent == 1


async def test_a_vanished_post_is_posted_again(db: async_sessionmaker[AsyncSession]) -> None:
    ledger = RewardLedger(db, _tree, PRICES)
    chain = ScriptedChain()
    settler = EpochSettler(ledger, chain, SettlementPolicy(epoch_seconds=0, confirmations=5))
    await _earn(db, "s1", "0xa", 10)
    await settler.close_epoch()
    await settler.step()
    [epoch] = await ledger.epochs()
    chain.lost.add(epoch.tx_hash)
    chain.posted.clear()
    await settler.step()
    [epoch] = await ledger.epochs()
    assert epoch.state == EpochState.CLOSED
    assert "vanished" in epoch.last_error
    chain.lost.clear()
    await settler.step()
    assert chain.sent == 2
    assert (await ledger.epochs())[0].state == EpochState.POSTED


async def test_claim_tickets(db: async_sessionmaker[AsyncSession]) -> None:
    ledger = RewardLedger(db, _tree, PRICES)
    await _earn(db, "s1", "0xa", 1000)
    with pytest.raises(FailedPreconditionError, match="no epoch has been posted"):
        await ledger.claim_ticket("0xa")
    settler = EpochSettler(ledger, ScriptedChain(), SettlementPolicy(epoch_seconds=0))
    await settler.close_epoch()
    await settler.step()
    ticket = await ledger.claim_ticket("0xa")
    assert (ticket.epoch, ticket.cumulative_wei) == (1, micro_to_wei(2_000_000))
    with pytest.raises(NotFoundError, match="0xb has earned nothing"):
        await ledger.claim_ticket("0xb")


async def test_epochs_close_on_the_clock(db: async_sessionmaker[AsyncSession]) -> None:
    ledger = RewardLedger(db, _tree, PRICES)
    await _earn(db, "s1", "0xa", 10)
    hourly = EpochSettler(ledger, ScriptedChain(), SettlementPolicy(epoch_seconds=3600))
    await hourly._close_if_due()
    assert await ledger.epochs() == [], "the first epoch lasts a full period"
    at_once = EpochSettler(ledger, ScriptedChain(), SettlementPolicy(epoch_seconds=1e-9))
    await at_once._close_if_due()
    assert [e.epoch for e in await ledger.epochs()] == [1]
