"""Stakes: what operators put at risk, read from the NodeStaking contract, and the slashing of
the ones caught cheating.

With `--min-stake` above 0, a node whose operator has staked less gets no work; with
`--stake-for-full-share`, placement believes a node's speed in proportion to its stake up to
that amount (so a sybil's hundred fresh keys with nothing staked get nothing, and a small stake
a small share). Both are 0 by default: a new network has no tokens to stake until its first
epoch pays.

A node caught returning a wrong output loses `--slash-fraction` of its stake on chain; the
transaction records the keccak256 of the evidence (the shard, the outputs' digests, the
similarity), and the evidence itself is logged.

Stakes are read in a worker thread (the chain may be remote) when a node attaches and every
`refresh_s`; placement reads the cached values and never waits on the chain.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


class StakeChain(Protocol):
    def stake_of(self, address: str) -> int: ...

    def unbonding_of(self, address: str) -> int: ...

    def slash(self, address: str, amount_wei: int, evidence: bytes) -> str: ...


@dataclass(frozen=True, slots=True)
class StakePolicy:
    #: Wei of reward token a node's operator must have staked to get work (0: no minimum).
    min_stake_wei: int = 0
    #: Stake at which a node gets its full share of work; less scales its share (0: off).
    full_share_wei: int = 0
    #: Fraction of its stake a node caught cheating loses.
    slash_fraction: float = 0.5
    #: Seconds between reads of every connected node's stake.
    refresh_s: float = 30.0

    @property
    def enabled(self) -> bool:
        return self.min_stake_wei > 0 or self.full_share_wei > 0


class Stakes:
    def __init__(self, chain: StakeChain | None, policy: StakePolicy) -> None:
        self._chain = chain
        self.policy = policy
        self._stakes: dict[str, int] = {}
        self._read_at = float("-inf")

    def stake(self, address: str) -> int:
        return self._stakes.get(address.lower(), 0)

    def eligible(self, address: str) -> bool:
        """Whether the node may get work at all."""
        return self.stake(address) >= self.policy.min_stake_wei

    def share(self, address: str) -> float:
        """The fraction of its speed placement believes: its stake over the full-share stake."""
        if self.policy.full_share_wei <= 0:
            return 1.0
        return min(1.0, self.stake(address) / self.policy.full_share_wei)

    async def refresh(self, addresses: Iterable[str]) -> None:
        """Read the stakes of `addresses` from the chain (a failure keeps the last values)."""
        if self._chain is None or not self.policy.enabled:
            return
        for address in addresses:
            try:
                stake = await asyncio.to_thread(self._chain.stake_of, address)
            except Exception as exc:
                logger.warning("could not read the stake of %s: %s", address, exc)
                continue
            self._stakes[address.lower()] = stake

    def due(self, now: float) -> bool:
        """Whether the cached stakes are `refresh_s` old (then they count as read at `now`)."""
        if not self.policy.enabled or now - self._read_at < self.policy.refresh_s:
            return False
        self._read_at = now
        return True

    async def slash(self, address: str, evidence: dict[str, object]) -> str | None:
        """Slash a caught node's operator; returns the transaction, or None when there was
        nothing to take or the chain refused (logged: the catch stands either way)."""
        if self._chain is None:
            return None
        record = json.dumps(evidence, sort_keys=True, separators=(",", ":")).encode()
        try:
            # Unbonding stake counts: unstaking just before being caught does not escape.
            stake = await asyncio.to_thread(self._chain.stake_of, address)
            stake += await asyncio.to_thread(self._chain.unbonding_of, address)
            amount = int(stake * self.policy.slash_fraction)
            if amount <= 0:
                return None
            tx = await asyncio.to_thread(self._chain.slash, address, amount, record)
        except Exception as exc:
            logger.warning("could not slash %s: %s", address, exc)
            return None
        self._stakes[address.lower()] = max(0, self.stake(address) - amount)
        logger.warning(
            "slashed %s by %d wei of its %d staked (tx %s); evidence %s",
            address,
            amount,
            stake,
            tx,
            record.decode(),
        )
        return tx
