"""Checking a claimed generation by re-scoring it: one teacher-forced pass over prompt + claimed
tokens instead of generating them again (a prefill of n tokens costs far less than n steps).

Row i of the pass is what the model predicts for claimed token i. The verifier replays the
claim's sampler over the rows (one seeded draw a row, as the generation made them) and passes a
claimed token when an honest run could have chosen it:

* greedy: its logit is within `GREEDY_MARGIN` of the best (honest CPUs and GPUs differ by about
  1e-3; another model's choices are not within it);
* sampling: it is the verifier's own draw, or the draw falls within `DRAW_SLACK` of its slice
  of the cumulative distribution (a rounding apart): with the seed, the draws are the same on
  every node, so the claim can hold no token but the one the seed chose.

Its end is checked the same way: "length" at max_tokens; "stop" where a stop text is spelled
(not earlier, not later) or where a stop token passes. A claim that passes is returned as it
is; otherwise the result is the honest generation from the first token that does not pass,
carried on with the same sampler — so the verifier's output is the task's true result either
way, and the engine's comparison of the two outputs decides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from tokenweave.models._decoder import Logits, Sampler, Sampling
from tokenweave.models._generator import Generation, Generator

GREEDY_MARGIN = 0.05
#: Sampling: how far outside a token's slice of the cumulative distribution the draw may fall.
DRAW_SLACK = 1e-4

Draw = tuple[int, float, npt.NDArray[np.float64]]


def acceptable(row: Logits, token: int, drawn: Draw, sampling: Sampling) -> bool:
    """Whether an honest run could have chosen `token` from `row` (`drawn`: the verifier's own
    draw from it, see `Sampler.draw`)."""
    own, u, cdf = drawn
    if token == own:
        return True
    if sampling.temperature == 0:
        return bool(row[token] >= row.max() - GREEDY_MARGIN)
    low = float(cdf[token - 1]) if token > 0 else 0.0
    high = float(cdf[token])
    return high > low and low - DRAW_SLACK <= u <= high + DRAW_SLACK


def verify_generation(
    generator: Generator,
    prompt: Sequence[int],
    claimed: Sequence[int],
    finish_reason: str,
    max_tokens: int,
    sampling: Sampling,
    stop: Sequence[str] = (),
    stop_ids: Sequence[int] = (),
    on_token: Callable[[int], None] = lambda token: None,
) -> Generation:
    """The claim when it passes (see the module's doc), else the honest generation.

    With `finish_reason` "" the claim is unfinished (a lost run's streamed tokens): once it
    passes in full, generation carries on from it and `on_token` sees each token past it."""
    stops = frozenset(stop_ids) | generator.end_ids
    rows = generator.decoder.score(prompt, claimed)
    sampler = Sampler(sampling)
    tokens: list[int] = []
    for i, row in enumerate(rows):
        drawn = sampler.draw(row)
        own = drawn[0]
        if len(tokens) == max_tokens:
            return Generation(tuple(tokens), generator.decode(tokens), "length")
        if i < len(claimed) and acceptable(row, claimed[i], drawn, sampling):
            tokens.append(claimed[i])
            if stop and (ended := generator.stopped(tokens, stop)) is not None:
                return ended  # an honest run stops here, whatever the claim goes on with
            continue
        if (
            i == len(claimed)
            and finish_reason == "stop"
            and any(acceptable(row, end, drawn, sampling) for end in stops)
        ):
            return Generation(tuple(tokens), generator.decode(tokens), "stop")
        if own in stops:
            return Generation(tuple(tokens), generator.decode(tokens), "stop")
        carried = len(tokens) == len(claimed)  # on from the whole claim: stream what comes
        if carried:
            on_token(own)
        return generator.generate(
            prompt,
            max_tokens,
            sampling,
            stop,
            stop_ids,
            on_token if carried else lambda token: None,
            prefix=[*tokens, own],
            sampler=sampler,
        )
    raise AssertionError("score() returns a row past the last claimed token")
