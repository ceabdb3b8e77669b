"""Merging window embeddings into document embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from tokenweave.coordinator._windows import WindowSpan

FloatArray = npt.NDArray[np.float32]


def document_embedding(spans: Sequence[WindowSpan], embeddings: FloatArray) -> FloatArray:
    """Token-weighted mean of one document's window embeddings, L2-normalised.

    Each window weighs as many tokens as it covers in the document (specials excluded); tokens in
    an overlap therefore count once per window that holds them.
    """
    if len(spans) != embeddings.shape[0] or not spans:
        raise ValueError(f"{len(spans)} spans for {embeddings.shape[0]} embeddings")
    weights = np.array([s.tokens for s in spans], dtype=np.float64)
    mean = (weights[:, None] * embeddings.astype(np.float64)).sum(axis=0) / weights.sum()
    norm = np.linalg.norm(mean)
    out: FloatArray = (mean / norm if norm > 0 else mean).astype(np.float32)
    return out
