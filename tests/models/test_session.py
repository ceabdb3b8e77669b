import dataclasses
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from tokenweave.models import (
    EmbeddingSession,
    ModelHashMismatchError,
    PreparedModel,
    default_providers,
    encode_document,
)


def _windows(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1000, 30000, size=int(n)) for n in rng.integers(0, 60, size=count)]


def test_matches_sentence_transformers(
    session: EmbeddingSession, tokenizer: Tokenizer, reference: dict[str, Any]
) -> None:
    cases = reference["cases"]
    ours = session.embed_windows([encode_document(tokenizer, case["text"]) for case in cases])
    theirs = np.array([case["embedding"] for case in cases], dtype=np.float64)
    cosine = (ours * theirs).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1)
    )
    assert cosine.min() >= 0.9999, cosine
    assert np.abs(ours - theirs).max() < 1e-5


def test_outputs_are_unit_float32_vectors(session: EmbeddingSession) -> None:
    out = session.embed_windows(_windows(5))
    assert out.shape == (5, 384)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_padding_does_not_change_embeddings(session: EmbeddingSession) -> None:
    windows = _windows(9, seed=1)
    batched = session.embed_windows(windows)  # batches of 4 padded to their longest window
    one_by_one = np.stack([session.embed_windows([w])[0] for w in windows])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)


def test_results_come_back_in_input_order(session: EmbeddingSession) -> None:
    windows = _windows(7, seed=2)
    forward = session.embed_windows(windows)
    backward = session.embed_windows(windows[::-1])
    np.testing.assert_allclose(forward, backward[::-1], atol=1e-6)


def test_edge_sizes(session: EmbeddingSession) -> None:
    assert session.embed_windows([]).shape == (0, 384)
    assert session.max_window_tokens == 510
    out = session.embed_windows([np.array([], dtype=np.int64), np.full(510, 2000)])
    assert np.isfinite(out).all()


@pytest.mark.parametrize(
    ("window", "message"),
    [
        (np.zeros(511, dtype=np.int64), "more than the 510"),
        (np.zeros((2, 3), dtype=np.int64), "1-D array of integer"),
        (np.array([1.5, 2.0]), "1-D array of integer"),
        (np.array([5, 30522]), "token ids must lie in"),
        (np.array([-1]), "token ids must lie in"),
    ],
)
def test_bad_windows_are_rejected(
    session: EmbeddingSession, window: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        session.embed_windows([np.array([7]), window])


def test_providers_are_the_active_ones(session: EmbeddingSession) -> None:
    assert session.providers == ["CPUExecutionProvider"]
    assert default_providers()[-1] == "CPUExecutionProvider"


def test_session_rehashes_the_model_bytes(prepared: PreparedModel) -> None:
    forged = dataclasses.replace(prepared, sha256="f" * 64)
    with pytest.raises(ModelHashMismatchError, match="f" * 64):
        EmbeddingSession(forged, providers=["CPUExecutionProvider"])


def test_batch_size_must_be_positive(prepared: PreparedModel) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        EmbeddingSession(prepared, batch_size=0)
