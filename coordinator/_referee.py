"""Referee: the coordinator runs a disputed task itself.

When two nodes disagree on a shard and no third node can run it (a two-node network, or every
other node already tried it), the coordinator decides with its own run: the same workload's
`run` on the same payload, with the models it prepared for planning, verified by hash. Only
disputes come here, one at a time, so a hostile pair of nodes can make the coordinator do at most
the work they refuse to do honestly — and each dispute costs the wrong one half its reputation.

The referee cannot read dataset blocks (they live on the nodes): a dispute over a task that reads
them is given up after the dispatcher's bounded wait instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from tokenweave import workloads
from tokenweave.coordinator._views import QueuedShard
from tokenweave.errors import FailedPreconditionError
from tokenweave.models import (
    EmbeddingSession,
    Generator,
    OnnxSession,
    PreparedModel,
    load_generator,
    load_prepared,
    load_tokenizer,
    stored_model_path,
)
from tokenweave.workloads import DocumentSource

logger = logging.getLogger(__name__)


class _Model:
    """A model loaded for the referee (the `LoadedModel` a workload's run asks for)."""

    def __init__(self, prepared: PreparedModel, threads: int) -> None:
        self.model = prepared
        self.tokenizer: Tokenizer = load_tokenizer(prepared)
        self._session = EmbeddingSession(prepared, intra_op_threads=threads)

    def embed(self, windows: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        matrix: npt.NDArray[np.float32] = np.ascontiguousarray(
            self._session.embed_windows(windows), dtype="<f4"
        )
        return matrix


class LocalRunner:
    """Runs tasks in the coordinator, for the referee. Models load on first use."""

    def __init__(self, cache_dir: Path, models_dir: Path, threads: int = 1) -> None:
        """`cache_dir`: the prepared built-in models; `models_dir`: registered ONNX models."""
        self._cache_dir = cache_dir
        self._models_dir = models_dir
        self._threads = threads
        self._models: dict[tuple[str, str], _Model] = {}
        self._generators: dict[tuple[str, str], Generator] = {}
        self._onnx: dict[str, OnnxSession] = {}
        self._lock = threading.Lock()
        self._one_at_a_time = asyncio.Lock()

    def model(self, name: str, sha256: str) -> _Model:
        with self._lock:
            loaded = self._models.get((name, sha256))
            if loaded is None:
                prepared = load_prepared(name, self._cache_dir, expected_sha256=sha256)
                loaded = self._models[(name, sha256)] = _Model(prepared, self._threads)
            return loaded

    def generator(self, name: str, sha256: str) -> Generator:
        with self._lock:
            loaded = self._generators.get((name, sha256))
            if loaded is None:
                prepared = load_generator(name, self._cache_dir, expected_sha256=sha256)
                loaded = Generator(prepared, threads=self._threads)
                self._generators[(name, sha256)] = loaded
            return loaded

    def onnx(self, name: str, sha256: str) -> OnnxSession:
        """A registered model, from the file the coordinator kept when it was registered."""
        with self._lock:
            loaded = self._onnx.get(sha256)
            if loaded is None:
                path = stored_model_path(self._models_dir, sha256)
                loaded = OnnxSession(path, sha256, ["CPUExecutionProvider"], self._threads)
                self._onnx[sha256] = loaded
            return loaded

    def report(self, output: bytes) -> None:
        """The referee's run streams nothing (its client has the nodes' parts)."""

    def cancelled(self) -> bool:
        return False

    def read_document(self, source: DocumentSource, label: str) -> str:
        raise FailedPreconditionError(
            f"{label}: the referee does not read dataset blocks (they live on the nodes)"
        )

    def read_bytes(self, source: DocumentSource, label: str) -> bytes:
        return self.read_document(source, label).encode()  # raises: as read_document

    def run(self, shard: QueuedShard, payload: bytes) -> bytes:
        """The shard's output as the coordinator computes it (synchronous)."""
        workload = workloads.get(shard.workload)
        return workload.run(shard.model, shard.model_sha256, payload, self).output

    async def output(
        self, shard: QueuedShard, payload: Callable[[str], Awaitable[bytes]]
    ) -> bytes | None:
        """The referee's output for a disputed shard, computed in a worker thread, one at a
        time; None (logged) when it cannot run it."""
        logger.warning(
            "shard %s: no node can decide its dispute; the coordinator runs it", shard.shard_id
        )
        try:
            data = await payload(shard.shard_id)
            async with self._one_at_a_time:
                return await asyncio.to_thread(self.run, shard, data)
        except Exception as exc:
            logger.warning("shard %s: the referee could not run it: %s", shard.shard_id, exc)
            return None
