"""Fixtures shared by every test package: MiniLM is converted to ONNX once per test run.

Under pytest-xdist every worker is its own process with its own session fixtures; the model is
still converted only once per run: the workers share one cache in the run's base temp folder (the
parent of each worker's own), and the first to take the lock converts while the others wait, then
only verify the result.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tokenweave.models import (
    Precision,
    PreparedGenerator,
    PreparedModel,
    prepare_generator,
    prepare_model,
)

MODEL_NAME = "all-minilm-l6-v2"
GENERATOR_NAME = "smollm2-135m-instruct"


def _xdist_worker() -> str | None:
    """This process's xdist worker id ("gw0", …), or None outside xdist."""
    return os.environ.get("PYTEST_XDIST_WORKER")


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (released when the process dies, even by SIGKILL)."""
    with lock_path.open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder with MiniLM prepared in it (processes started by tests prepare nothing)."""
    if _xdist_worker() is None:
        cache = tmp_path_factory.mktemp("model-cache")
    else:
        # The controller's base temp, fresh for each run (each worker's is a sub-folder of it).
        cache = tmp_path_factory.getbasetemp().parent / "model-cache"
        cache.mkdir(exist_ok=True)
    # The lock sits beside the cache, not in it: tests look at the cache's exact contents.
    with _exclusive(cache.with_name(cache.name + ".lock")):
        prepare_model(MODEL_NAME, cache)
    return cache


@pytest.fixture(scope="session")
def prepared(model_cache: Path) -> PreparedModel:
    return prepare_model(MODEL_NAME, model_cache)  # already there: only verified


@pytest.fixture(scope="session")
def generator(model_cache: Path) -> PreparedGenerator:
    """SmolLM2 prepared (its exact decoder) in the shared cache: converted by the first worker
    to get the lock, verified by the others."""
    with _exclusive(model_cache.with_name(model_cache.name + ".lock")):
        return prepare_generator(GENERATOR_NAME, model_cache)


@pytest.fixture(scope="session")
def half_generator(generator: PreparedGenerator, model_cache: Path) -> PreparedGenerator:
    """The same generator with its fp16 (GPU) decoder built too (under the cache's lock)."""
    with _exclusive(model_cache.with_name(model_cache.name + ".lock")):
        return prepare_generator(GENERATOR_NAME, model_cache, (Precision.HALF,))


@pytest.fixture(scope="session")
def fast_generator(generator: PreparedGenerator, model_cache: Path) -> PreparedGenerator:
    """The same generator with its FAST decoder built too (under the cache's lock)."""
    with _exclusive(model_cache.with_name(model_cache.name + ".lock")):
        return prepare_generator(GENERATOR_NAME, model_cache, (Precision.FAST,))
