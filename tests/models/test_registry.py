import dataclasses

import pytest

from tokenweave.models import (
    ALL_MINILM_L6_V2,
    ModelSpec,
    UnknownModelError,
    get_model_spec,
    known_models,
)


def test_minilm_is_registered() -> None:
    spec = get_model_spec("all-minilm-l6-v2")
    assert spec is ALL_MINILM_L6_V2
    assert (spec.dim, spec.max_tokens, spec.default_window) == (384, 512, 256)
    assert "all-minilm-l6-v2" in known_models()


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ALL_MINILM_L6_V2.dim = 1  # type: ignore[misc]


def test_unknown_model_names_the_model_and_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"'no-such-model'.*all-minilm-l6-v2") as info:
        get_model_spec("no-such-model")
    assert info.value.name == "no-such-model"
    assert set(info.value.known) <= set(known_models())


def test_default_window_must_fit_the_model() -> None:
    with pytest.raises(ValueError, match="default_window"):
        ModelSpec(
            "m", dim=8, max_tokens=16, default_window=17, source_package="p", source_module="p"
        )
