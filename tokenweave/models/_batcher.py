"""DynamicBatcher: windows from concurrent callers (shards, jobs) joined into one batch.

A GPU runs MiniLM at 9.4 M tokens/s on batches of 1,024 windows and far less on the 16 windows
of one shard, so a GPU node runs several shards at once and their windows meet here, as
requests meet in Triton's dynamic batcher: a batch runs when it holds ``max_batch`` windows, or
``max_delay_s`` after its first request arrived. While a batch runs the next one gathers, so
under load batches fill without waiting; a lone request waits ``max_delay_s`` at most. Two
runner threads take batches in turn, so one batch is checked and packed while the other runs
on the device (ONNX Runtime releases the GIL while it runs).

Each caller's windows are checked before they join, so one shard's bad input fails that shard
alone; a batch that fails as a whole (the device ran out of memory, say) fails every request
in it, and their shards are retried as any failed shard is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from tokenweave.models._session import Embeddings, EmbeddingSession
from tokenweave.models._tokenizer import TokenIds


@dataclass
class _Request:
    windows: list[TokenIds]
    arrived: float
    result: Future[Embeddings] = field(default_factory=Future)


@dataclass(frozen=True)
class BatchStats:
    """What the batcher has run so far."""

    batches: int
    windows: int
    requests: int

    @property
    def mean_batch(self) -> float:
        return self.windows / self.batches if self.batches else 0.0


class DynamicBatcher:
    """Thread-safe; ``embed_windows`` blocks its caller until its batch has run. ``close``
    stops the batching thread (requests still waiting fail)."""

    def __init__(
        self,
        session: EmbeddingSession,
        max_batch: int,
        max_delay_s: float = 0.005,
        workers: int = 2,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_delay_s < 0:
            raise ValueError(f"max_delay_s must not be negative, got {max_delay_s}")
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.session = session
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self._pending: list[_Request] = []
        self._closed = False
        self._changed = threading.Condition()
        self._batches = self._windows = self._requests = 0
        self._threads = [
            threading.Thread(target=self._run, name=f"dynamic-batcher-{i}", daemon=True)
            for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def providers(self) -> list[str]:
        return self.session.providers

    @property
    def stats(self) -> BatchStats:
        with self._changed:
            return BatchStats(self._batches, self._windows, self._requests)

    def embed_windows(self, windows: Sequence[TokenIds]) -> Embeddings:
        """What ``EmbeddingSession.embed_windows`` returns for ``windows``, run in a batch
        with whatever other callers have waiting."""
        checked = self.session.check_windows(windows)
        if not checked:
            return self.session.embed_checked(checked)
        request = _Request(checked, time.monotonic())
        with self._changed:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending.append(request)
            self._changed.notify_all()
        return request.result.result()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                joined = self.session.embed_checked([w for r in batch for w in r.windows])
            except BaseException as exc:  # every request of the batch learns why
                for request in batch:
                    request.result.set_exception(exc)
                continue
            first = 0
            for request in batch:
                count = len(request.windows)
                request.result.set_result(np.ascontiguousarray(joined[first : first + count]))
                first += count

    def _next_batch(self) -> list[_Request] | None:
        """The requests of the next batch, once it is due; None when closed."""
        with self._changed:
            while True:
                if self._closed:
                    for request in self._pending:
                        request.result.set_exception(RuntimeError("the batcher is closed"))
                    self._pending.clear()
                    return None
                if self._pending:
                    waited = time.monotonic() - self._pending[0].arrived
                    windows = sum(len(r.windows) for r in self._pending)
                    if windows >= self.max_batch or waited >= self.max_delay_s:
                        return self._take()
                    self._changed.wait(self.max_delay_s - waited)
                else:
                    self._changed.wait()

    def _take(self) -> list[_Request]:
        """Requests from the front, in arrival order, up to ``max_batch`` windows (always at
        least one request, however large)."""
        taken = [self._pending.pop(0)]
        windows = len(taken[0].windows)
        while self._pending and windows + len(self._pending[0].windows) <= self.max_batch:
            request = self._pending.pop(0)
            taken.append(request)
            windows += len(request.windows)
        self._batches += 1
        self._windows += windows
        self._requests += len(taken)
        return taken
