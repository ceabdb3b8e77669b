"""ShardRunner: runs a shard's windows through the model and measures the node's speed."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenweave.errors import InvalidArgumentError
from tokenweave.models import (
    SPECIAL_TOKENS_PER_WINDOW,
    DynamicBatcher,
    EmbeddingSession,
    PreparedModel,
    load_tokenizer,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ShardRun:
    embeddings: bytes
    rows: int
    dim: int
    tokens: int
    wall_seconds: float
    digest: str
    provider: str


class ShardRunner:
    """Synchronous; the daemon calls it from a worker thread."""

    def __init__(
        self,
        model: PreparedModel,
        session: EmbeddingSession,
        batcher: DynamicBatcher | None = None,
    ) -> None:
        self.model = model
        self._session = session
        self._batcher = batcher
        self.tokenizer = load_tokenizer(model)

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
            stats = self._batcher.stats
            logger.info(
                "dynamic batching: %d windows of %d shards in %d batches (%.1f windows a batch)",
                stats.windows,
                stats.requests,
                stats.batches,
                stats.mean_batch,
            )

    @property
    def provider(self) -> str:
        return self._session.providers[0]

    def embed(self, windows: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        """Unit-length vectors, one row per window (the `LoadedModel` workloads call); through
        the batcher, with the windows of the shards running beside this one, when there is
        one."""
        embedder = self._batcher or self._session
        matrix: npt.NDArray[np.float32] = np.ascontiguousarray(
            embedder.embed_windows(windows), dtype="<f4"
        )
        return matrix

    def run(self, windows: Sequence[npt.NDArray[np.int64]]) -> ShardRun:
        """Embed and time `windows` (calibration: the session itself, alone)."""
        started = time.perf_counter()
        matrix = np.ascontiguousarray(self._session.embed_windows(windows), dtype="<f4")
        wall = time.perf_counter() - started
        data = matrix.tobytes()
        return ShardRun(
            embeddings=data,
            rows=matrix.shape[0],
            dim=matrix.shape[1],
            tokens=sum(len(w) + SPECIAL_TOKENS_PER_WINDOW for w in windows),
            wall_seconds=wall,
            digest=hashlib.sha256(data).hexdigest(),
            provider=self.provider,
        )

    def calibrate(self, windows: int = 8, repeats: int = 2) -> float:
        """Tokens per second on full windows of the model's default length (best of `repeats`)."""
        if windows < 1:
            raise InvalidArgumentError(f"calibration needs at least one window, not {windows}")
        length = self.model.spec.default_window - SPECIAL_TOKENS_PER_WINDOW
        ids = (
            np.arange(windows * length, dtype=np.int64).reshape(windows, length) % 20_000
        ) + 1_000
        batch = list(ids)
        self.run(batch[:2])  # warm-up: first-run allocations
        best = min(self.run(batch).wall_seconds for _ in range(repeats))
        return windows * (length + SPECIAL_TOKENS_PER_WINDOW) / best
