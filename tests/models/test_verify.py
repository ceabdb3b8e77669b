"""Verification by re-scoring on the real decoder: honest claims pass as they are; other
tokens, other text, an early or a late end are replaced by the honest generation."""

from __future__ import annotations

import pytest

from tokenweave.models import Generation, Generator, Message, PreparedGenerator, Sampling
from tokenweave.models import verify_generation as verify

GREEDY = Sampling()
SAMPLED = Sampling(temperature=0.8, top_p=0.9, seed=7)


@pytest.fixture(scope="module")
def loaded(generator: PreparedGenerator) -> Generator:
    return Generator(generator, threads=2)


def prompt(loaded: Generator, text: str) -> list[int]:
    return loaded.encode(loaded.chat_prompt([Message("user", text)]))


def check(loaded: Generator, ids: list[int], claim: Generation, sampling: Sampling) -> Generation:
    return verify(loaded, ids, list(claim.token_ids), claim.finish_reason, 24, sampling)


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_honest_generations_pass_as_they_are(loaded: Generator, sampling: Sampling) -> None:
    for text in ("What is the capital of France?", "Count to five."):
        ids = prompt(loaded, text)
        honest = loaded.generate(ids, 24, sampling)
        assert check(loaded, ids, honest, sampling) == honest, text


def test_a_changed_token_gets_the_honest_generation_back(loaded: Generator) -> None:
    ids = prompt(loaded, "What is the capital of France?")
    honest = loaded.generate(ids, 24)
    forged = list(honest.token_ids)
    forged[3] = loaded.encode(" London")[0]
    claim = Generation(tuple(forged), loaded.decode(forged), honest.finish_reason)
    assert check(loaded, ids, claim, GREEDY) == honest


def test_other_text_gets_the_seeded_run_back(loaded: Generator) -> None:
    ids = prompt(loaded, "Name three colours.")
    other = loaded.generate(prompt(loaded, "Count to five."), 24, SAMPLED)
    honest = loaded.generate(ids, 24, SAMPLED)
    assert check(loaded, ids, other, SAMPLED) == honest, "the same seed, the same draws"


def test_an_early_or_late_end_is_caught(loaded: Generator) -> None:
    ids = prompt(loaded, "Count to five.")
    honest = loaded.generate(ids, 24)
    early = Generation(honest.token_ids[:4], loaded.decode(honest.token_ids[:4]), "stop")
    assert check(loaded, ids, early, GREEDY) == honest
    stop = [loaded.decode(honest.token_ids[:6])[-2:]]  # a text the run spells at token 6
    stopped = loaded.generate(ids, 24, GREEDY, stop=stop)
    assert stopped.finish_reason == "stop"
    late = verify(loaded, ids, list(honest.token_ids), "length", 24, GREEDY, stop=stop)
    assert late == stopped, "an honest run ends at the stop text"


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_a_lost_runs_tokens_are_carried_on_to_the_same_generation(
    loaded: Generator, sampling: Sampling
) -> None:
    ids = prompt(loaded, "Write a short poem about the sea.")
    honest = loaded.generate(ids, 24, sampling)
    assert len(honest.token_ids) == 24
    streamed: list[int] = []
    carried = verify(
        loaded, ids, list(honest.token_ids[:9]), "", 24, sampling, on_token=streamed.append
    )
    assert carried == honest, "the seeded draws go on where the lost run stopped"
    assert streamed == list(honest.token_ids[9:]), "only the tokens past the prefix are new"


def test_a_forged_prefix_is_not_carried_on(loaded: Generator) -> None:
    ids = prompt(loaded, "What is the capital of France?")
    honest = loaded.generate(ids, 24)
    forged = list(honest.token_ids[:6])
    forged[3] = loaded.encode(" London")[0]
    streamed: list[int] = []
    carried = verify(loaded, ids, forged, "", 24, GREEDY, on_token=streamed.append)
    assert carried == honest, "generated again from the first token that is not the model's"
    assert streamed == [], "nothing streams on from text the model did not write"
