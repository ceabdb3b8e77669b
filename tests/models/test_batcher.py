"""DynamicBatcher: concurrent callers' windows run as one batch, each caller gets its own rows."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np
import pytest

from tokenweave.models import EmbeddingSession
from tokenweave.models._batcher import DynamicBatcher


class Recording:
    """An EmbeddingSession stand-in: row i of a batch is [first token of window i, batch size];
    it can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.fail: Exception | None = None

    def check_windows(self, windows: Sequence[Any]) -> list[np.ndarray]:
        checked = [np.asarray(w, dtype=np.int64) for w in windows]
        if any((w < 0).any() for w in checked):
            raise ValueError("token ids must lie in 0..")
        return checked

    def embed_checked(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        self.batches.append(len(windows))
        if self.fail is not None:
            raise self.fail
        return np.array([[w[0], len(windows)] for w in windows], dtype=np.float32)


def _batcher(session: Any, **options: Any) -> DynamicBatcher:
    return DynamicBatcher(cast(EmbeddingSession, session), **options)


def _together(count: int, call: Any) -> list[Any]:
    """Run `call(i)` on `count` threads that start at the same moment; results or exceptions."""
    start = threading.Barrier(count)

    def one(i: int) -> Any:
        start.wait()
        try:
            return call(i)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_callers_share_one_batch_and_get_their_own_rows(workers: int) -> None:
    session = Recording()
    # Full before the delay ends.
    batcher = _batcher(session, max_batch=32, max_delay_s=30, workers=workers)
    try:
        results = _together(8, lambda i: batcher.embed_windows([[100 * i + k] for k in range(4)]))
    finally:
        batcher.close()
    assert session.batches == [32]
    for i, rows in enumerate(results):
        np.testing.assert_array_equal(rows[:, 0], [100 * i + k for k in range(4)])
        assert (rows[:, 1] == 32).all()
    stats = batcher.stats
    assert (stats.batches, stats.windows, stats.requests, stats.mean_batch) == (1, 32, 8, 32.0)


def test_batches_stop_at_max_batch_and_a_large_request_runs_whole() -> None:
    session = Recording()
    batcher = _batcher(session, max_batch=8, max_delay_s=0)
    try:
        rows = batcher.embed_windows([[k] for k in range(20)])
    finally:
        batcher.close()
    assert session.batches == [20]  # one request is never split (the session batches inside)
    np.testing.assert_array_equal(rows[:, 0], range(20))


def test_bad_windows_fail_only_their_caller() -> None:
    session = Recording()
    batcher = _batcher(session, max_batch=64, max_delay_s=0.05)
    try:
        results = _together(4, lambda i: batcher.embed_windows([[i], [-1 if i == 2 else i]]))
    finally:
        batcher.close()
    assert isinstance(results[2], ValueError)
    for i in (0, 1, 3):
        np.testing.assert_array_equal(results[i][:, 0], [i, i])
    assert sum(session.batches) == 6


def test_a_failed_batch_fails_every_request_in_it() -> None:
    session = Recording()
    session.fail = MemoryError("out of device memory")
    batcher = _batcher(session, max_batch=4, max_delay_s=30)
    try:
        results = _together(4, lambda i: batcher.embed_windows([[i]]))
    finally:
        batcher.close()
    assert session.batches == [4]
    assert all(isinstance(r, MemoryError) for r in results)


def test_a_closed_batcher_refuses_work() -> None:
    batcher = _batcher(Recording(), max_batch=4)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed_windows([[1]])


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        _batcher(Recording(), max_batch=0)
    with pytest.raises(ValueError, match="max_delay_s"):
        _batcher(Recording(), max_batch=1, max_delay_s=-1)
    with pytest.raises(ValueError, match="workers"):
        _batcher(Recording(), max_batch=1, workers=0)


def test_the_real_session_gives_the_same_vectors_batched(session: EmbeddingSession) -> None:
    rng = np.random.default_rng(0)
    windows = [
        [rng.integers(1000, 30000, size=int(n)) for n in rng.integers(1, 60, size=3)]
        for _ in range(6)
    ]
    batcher = DynamicBatcher(session, max_batch=18, max_delay_s=30)
    try:
        results = _together(6, lambda i: batcher.embed_windows(windows[i]))
    finally:
        batcher.close()
    assert batcher.stats.batches == 1
    for i, rows in enumerate(results):
        np.testing.assert_allclose(rows, session.embed_windows(windows[i]), atol=1e-5)
