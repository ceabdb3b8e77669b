"""Metering: what a shard of verified work earns, in micro-tokens of the reward token."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


#: The price entry of every model without one of its own: developers' registered ONNX models,
#: whose units are items (rows of a batch).
ANY_MODEL = "*"


@dataclass(frozen=True)
class PriceList:
    """Reward per 1,000 model tokens, per model, in micro-tokens: input tokens (an embedded
    text, a prompt) at one price, output (generated) tokens at another, the input price when
    none is given. A model of tensors is billed per 1,000 items."""

    per_1k_micro: Mapping[str, int]
    output_per_1k_micro: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def parse(cls, entries: Sequence[str]) -> PriceList:
        """Entries like "all-minilm-l6-v2=1.5" or "smollm2-135m-instruct=0.2/0.8" (reward
        tokens per 1,000 input tokens, and per 1,000 output tokens)."""
        inputs: dict[str, int] = {}
        outputs: dict[str, int] = {}
        for entry in entries:
            model, sep, raw = entry.partition("=")
            parts = raw.split("/")
            micros = [_micro(part) for part in parts]
            if not sep or not model.strip() or len(parts) > 2 or None in micros:
                raise InvalidArgumentError(
                    f"price {entry!r} must read MODEL=TOKENS_PER_1000[/OUTPUT_TOKENS_PER_1000] "
                    "with at most 6 decimals, e.g. all-minilm-l6-v2=1.5"
                )
            inputs[model.strip()] = micros[0] or 0
            outputs[model.strip()] = micros[-1] or 0
        return cls(inputs, outputs)

    def reward_micro(self, model: str, usage: Usage) -> int:
        """Rounded down to the micro-token."""
        per_1k = self.per_1k_micro.get(model, self.per_1k_micro.get(ANY_MODEL))
        if per_1k is None:
            raise NotFoundError(f"no price for model {model!r}")
        fallback_out = self.output_per_1k_micro.get(ANY_MODEL, per_1k)
        per_1k_out = self.output_per_1k_micro.get(model, fallback_out)
        return (usage.input_tokens * per_1k + usage.output_tokens * per_1k_out) // 1000


def _micro(raw: str) -> int | None:
    """Micro-tokens of a decimal price; None unless it is one with at most 6 decimals."""
    try:
        micro = Decimal(raw.strip()) * MICRO_PER_TOKEN
    except InvalidOperation:
        return None
    if micro < 0 or micro != micro.to_integral_value():
        return None
    return int(micro)
