"""`to_the_end`: a state change that runs to its end even when its caller is cancelled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
S = TypeVar("S")
Change = Callable[Concatenate[S, P], Coroutine[Any, Any, None]]


def to_the_end(change: Change[S, P]) -> Change[S, P]:
    """The state change runs to its end even when its caller is cancelled (a node hung up): a
    shard is never left between the database and the dispatcher's memory."""

    async def shielded(self: S, /, *args: P.args, **kwargs: P.kwargs) -> None:
        await asyncio.shield(asyncio.ensure_future(change(self, *args, **kwargs)))

    shielded.__name__, shielded.__doc__ = change.__name__, change.__doc__
    return shielded
