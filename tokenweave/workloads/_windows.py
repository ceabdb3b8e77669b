"""Cutting token sequences into overlapping windows, grouping windows into shards, and merging
window embeddings into document embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenweave.errors import InvalidArgumentError
from tokenweave.models import SPECIAL_TOKENS_PER_WINDOW


@dataclass(frozen=True, slots=True)
class WindowSpan:
    """Window `[start, end)` of document `document`, in its token sequence without specials."""

    document: int
    start: int
    end: int

    @property
    def tokens(self) -> int:
        return self.end - self.start


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """How a job's documents are cut: at most `window` tokens per window, specials included."""

    window: int
    overlap: int

    @classmethod
    def validated(cls, window: int, overlap: int, max_window: int) -> WindowPlan:
        if window > max_window:
            raise InvalidArgumentError(
                f"window={window} is above the model's maximum of {max_window} tokens"
            )
        if window <= SPECIAL_TOKENS_PER_WINDOW:
            raise InvalidArgumentError(
                f"window={window} leaves no room for text beside [CLS] and [SEP]; use at least 3"
            )
        if overlap >= window:
            raise InvalidArgumentError(f"overlap={overlap} must be smaller than window={window}")
        text_tokens = window - SPECIAL_TOKENS_PER_WINDOW
        if overlap >= text_tokens:
            raise InvalidArgumentError(
                f"overlap={overlap} must be smaller than the window's {text_tokens} text tokens "
                f"(window={window} minus [CLS] and [SEP])"
            )
        return cls(window=window, overlap=overlap)

    @property
    def content(self) -> int:
        """Text tokens per full window."""
        return self.window - SPECIAL_TOKENS_PER_WINDOW

    @property
    def stride(self) -> int:
        return self.content - self.overlap

    def spans(self, document: int, length: int) -> list[WindowSpan]:
        """Windows covering `length` tokens; neighbours share exactly `overlap` tokens."""
        if length <= 0:
            raise InvalidArgumentError(f"document {document} has no tokens")
        spans = []
        start = 0
        while True:
            end = min(start + self.content, length)
            spans.append(WindowSpan(document, start, end))
            if end == length:
                return spans
            start += self.stride


@dataclass(frozen=True, slots=True)
class ShardPlan:
    """Consecutive windows (in job order) that run together on one node."""

    index: int
    first_window: int
    windows: tuple[WindowSpan, ...]

    @property
    def model_tokens(self) -> int:
        """Tokens the model processes for this shard, specials included."""
        return sum(w.tokens + SPECIAL_TOKENS_PER_WINDOW for w in self.windows)


def group_into_shards(windows: Sequence[WindowSpan], windows_per_shard: int) -> list[ShardPlan]:
    """Split the job's windows, in order, into shards of at most `windows_per_shard`."""
    if windows_per_shard <= 0:
        raise InvalidArgumentError(f"windows_per_shard={windows_per_shard} must be positive")
    return [
        ShardPlan(
            index=i, first_window=first, windows=tuple(windows[first : first + windows_per_shard])
        )
        for i, first in enumerate(range(0, len(windows), windows_per_shard))
    ]


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
