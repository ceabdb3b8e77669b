"""Metering: what a shard of verified work earns, in micro-tokens of the reward token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.workloads import Usage

#: Ledger amounts are integers of 1e-6 reward tokens; the token itself has 18 decimals.
MICRO_PER_TOKEN = 10**6
WEI_PER_MICRO = 10**12


def micro_to_wei(micro: int) -> int:
    return micro * WEI_PER_MICRO


WEI_PER_TOKEN = 10**18


def format_micro(micro: int) -> str:
    """1234567 → '1.234567'."""
    return format_wei(micro_to_wei(micro))


def format_wei(wei: int) -> str:
    """1500000000000000000 → '1.5'."""
    whole, frac = divmod(wei, WEI_PER_TOKEN)
    return f"{whole}.{frac:018d}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class PriceList:
    """Reward per 1,000 model tokens, per model, in micro-tokens."""

    per_1k_micro: Mapping[str, int]

    @classmethod
    def parse(cls, entries: Sequence[str]) -> PriceList:
        """Entries like "all-minilm-l6-v2=1.5" (reward tokens per 1,000 model tokens)."""
        prices: dict[str, int] = {}
        for entry in entries:
            model, sep, raw = entry.partition("=")
            try:
                price = Decimal(raw.strip())
            except InvalidOperation:
                price = Decimal(-1)
            micro = price * MICRO_PER_TOKEN
            if not sep or not model.strip() or price < 0 or micro != micro.to_integral_value():
                raise InvalidArgumentError(
                    f"price {entry!r} must read MODEL=TOKENS_PER_1000 with at most 6 decimals, "
                    "e.g. all-minilm-l6-v2=1.5"
                )
            prices[model.strip()] = int(micro)
        return cls(prices)

    def reward_micro(self, model: str, usage: Usage) -> int:
        """Rounded down to the micro-token. Input and output tokens share one price today."""
        try:
            per_1k = self.per_1k_micro[model]
        except KeyError:
            raise NotFoundError(f"no price for model {model!r}") from None
        return usage.total * per_1k // 1000
