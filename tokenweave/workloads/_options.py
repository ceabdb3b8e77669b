"""Reading a workload's options: text in, checked values out, errors naming the option."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from tokenweave.errors import InvalidArgumentError, clip


def check_known(options: Mapping[str, str], known: Sequence[str], workload: str) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidArgumentError(
            f"unknown option(s) {', '.join(clip(u) for u in unknown[:5])} for {workload}; "
            f"it takes {', '.join(known)}"
        )


def int_option(
    options: Mapping[str, str], name: str, low: int = 0, high: int | None = None
) -> int | None:
    """The option as an integer in [low, high]; None when it is not given."""
    raw = options.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={clip(raw)} is not an integer") from None
    if value < low or (high is not None and value > high):
        if high is None:
            raise InvalidArgumentError(f"{name}={value} must be at least {low}")
        raise InvalidArgumentError(f"{name}={value} must be between {low} and {high}")
    return value


def float_option(options: Mapping[str, str], name: str) -> float | None:
    """The option as a finite number; None when it is not given."""
    raw = options.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidArgumentError(f"{name}={clip(raw)} is not a number") from None
    if not math.isfinite(value):
        raise InvalidArgumentError(f"{name}={clip(raw)} is not a finite number")
    return value
