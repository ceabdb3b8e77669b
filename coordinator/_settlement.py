"""EpochSettler: closes epochs on a clock, posts their roots on chain, waits for confirmations.

Roots go on chain strictly in epoch order, each once: posting is idempotent on the chain side (an
epoch the contract already has is not sent again), failures back off exponentially, and a posted
root counts as settled only after `confirmations` blocks. A posting transaction that disappears
before then (a reorg) puts the epoch back to be posted again.

Each root announces its epoch's new payouts (the sum of the epoch's earnings, in wei): the
distributor refuses a root announcing more than its per-epoch mint cap, and never pays out more
than the roots announced in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass
from typing import Protocol

from tokenweave.coordinator._db import utcnow
from tokenweave.coordinator._errors import database_unreachable
from tokenweave.coordinator._leader import Leadership
from tokenweave.coordinator._ledger import EpochView, RewardLedger
from tokenweave.coordinator._metering import micro_to_wei
from tokenweave.types import ChainInfo, EpochState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SentTransaction:
    tx_hash: str
    success: bool
    block_number: int
    gas_used: int
    revert_reason: str = ""


class RewardChain(Protocol):
    """The chain side of settlement and claims (blocking calls; run them in a thread)."""

    @property
    def info(self) -> ChainInfo: ...

    def claimed(self, address: str) -> int:
        """Wei the account has claimed so far."""
        ...

    def balance(self, address: str) -> int:
        """The account's reward-token balance, in wei."""
        ...

    def nonce(self, address: str) -> int: ...

    def gas_price(self) -> int: ...

    def fund(self, address: str, minimum_wei: int) -> None:
        """Top the account's ether up to `minimum_wei` for gas (development chains only)."""
        ...

    def send_raw(self, raw: bytes) -> SentTransaction:
        """Relay a signed call to the reward contracts: simulated first, the sender's next
        nonce only, waited for without holding up other callers."""
        ...

    def post_root(self, epoch: int, root: bytes, amount_wei: int) -> tuple[str, int | None]:
        """Post (or find already posted) the root of `epoch`, announcing `amount_wei` new
        payouts (the epoch's increase in total cumulative amounts); (tx hash, block number)."""
        ...

    def stake_of(self, address: str) -> int:
        """The operator's active stake, in wei of the reward token."""
        ...

    def slash(self, address: str, amount_wei: int, evidence: bytes) -> str:
        """Take up to `amount_wei` of the operator's stake, recording keccak256(evidence) on
        chain; the transaction's hash."""
        ...

    def confirmations(self, tx_hash: str) -> int | None:
        """Blocks on top of the transaction's, 1 when just mined; None if the chain lost it."""
        ...


@dataclass(frozen=True)
class SettlementPolicy:
    #: Close an epoch this often (0: only on command).
    epoch_seconds: float = 3600.0
    confirmations: int = 1
    poll_seconds: float = 1.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0


class EpochSettler:
    def __init__(
        self,
        ledger: RewardLedger,
        chain: RewardChain,
        policy: SettlementPolicy,
        leadership: Leadership | None = None,
    ) -> None:
        """`leadership`: with several coordinators on one database, only its holder closes
        epochs on the clock, posts and confirms (None: this one always does)."""
        self._ledger = ledger
        self._leadership = leadership
        self._chain = chain
        self._policy = policy
        self._wake = asyncio.Event()
        self._retry_at: dict[int, float] = {}
        self._lock = asyncio.Lock()
        self._started = utcnow()

    async def close_epoch(self) -> EpochView | None:
        async with self._lock:
            view = await self._ledger.close_epoch()
        if view is not None:
            logger.info(
                "epoch %d closed: %d operators, %d tokens, root %s",
                view.epoch,
                view.operators,
                view.tokens,
                view.root,
            )
        self._wake.set()
        return view

    async def run(self) -> None:
        """Forever: close epochs on the clock, post, confirm — while this coordinator leads."""
        try:
            while True:
                self._wake.clear()
                try:
                    if self._leadership is None or await self._leadership.held():
                        await self._close_if_due()
                        await self.step()
                except Exception as exc:
                    if database_unreachable(exc):
                        logger.warning("settlement: database unreachable: %s", exc)
                    else:
                        logger.exception("settlement step failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._policy.poll_seconds)
        finally:
            if self._leadership is not None:
                await self._leadership.release()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._policy.poll_seconds)

    async def _close_if_due(self) -> None:
        if self._policy.epoch_seconds <= 0:
            return
        last = await self._ledger.last_closed_at() or self._started
        if utcnow() - last >= dt.timedelta(seconds=self._policy.epoch_seconds):
            await self.close_epoch()

    async def step(self) -> None:
        """Advance every unsettled epoch as far as it can go now, in order."""
        async with self._lock:
            for epoch in await self._ledger.epochs([EpochState.CLOSED, EpochState.POSTED]):
                if epoch.state == EpochState.CLOSED:
                    posted = await self._post(epoch)
                    if posted is None:
                        return  # later roots wait for this one
                    epoch = posted
                await self._confirm(epoch)

    async def _post(self, epoch: EpochView) -> EpochView | None:
        loop = asyncio.get_running_loop()
        if self._retry_at.get(epoch.epoch, 0.0) > loop.time():
            return None
        try:
            tx_hash, block = await asyncio.to_thread(
                self._chain.post_root,
                epoch.epoch,
                bytes.fromhex(epoch.root[2:]),
                micro_to_wei(epoch.amount_micro),
            )
        except Exception as exc:
            delay = min(
                self._policy.backoff_initial_s * 2**epoch.attempts, self._policy.backoff_max_s
            )
            self._retry_at[epoch.epoch] = loop.time() + delay
            await self._ledger.record_failure(epoch.epoch, f"{type(exc).__name__}: {exc}")
            logger.warning(
                "epoch %d: posting the root failed (%s); retrying in %.0f s",
                epoch.epoch,
                exc,
                delay,
            )
            return None
        self._retry_at.pop(epoch.epoch, None)
        logger.info("epoch %d: root posted in %s", epoch.epoch, tx_hash)
        return await self._ledger.mark_posted(epoch.epoch, tx_hash, block)

    async def _confirm(self, epoch: EpochView) -> None:
        confirmations = await asyncio.to_thread(self._chain.confirmations, epoch.tx_hash)
        if confirmations is None:
            await self._ledger.mark_unposted(epoch.epoch, f"transaction {epoch.tx_hash} vanished")
            logger.warning("epoch %d: posting transaction vanished; posting again", epoch.epoch)
        elif confirmations >= self._policy.confirmations:
            await self._ledger.mark_settled(epoch.epoch)
            logger.info("epoch %d settled (%d confirmations)", epoch.epoch, confirmations)
