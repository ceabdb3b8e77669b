import numpy as np
import pytest

from tokenweave.workloads import WindowSpan, document_embedding


def test_document_embedding_is_the_normalised_token_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(3, 8)).astype(np.float32)
    spans = [WindowSpan(0, 0, 10), WindowSpan(0, 8, 12), WindowSpan(0, 10, 40)]
    expected = (10 * rows[0] + 4 * rows[1] + 30 * rows[2]) / 44
    expected /= np.linalg.norm(expected)
    got = document_embedding(spans, rows)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert np.linalg.norm(got) == pytest.approx(1.0, abs=1e-6)


def test_one_window_documents_keep_their_window_embedding() -> None:
    row = np.array([[3.0, 4.0]], dtype=np.float32)
    np.testing.assert_allclose(document_embedding([WindowSpan(0, 0, 5)], row), [0.6, 0.8])


def test_span_and_row_counts_must_agree() -> None:
    with pytest.raises(ValueError, match="2 spans for 1 embeddings"):
        document_embedding([WindowSpan(0, 0, 1), WindowSpan(0, 1, 2)], np.zeros((1, 4), np.float32))
