"""Real processes: a coordinator and nodes started as subprocesses on ephemeral loopback ports.

Every process started here is stopped (SIGTERM, then SIGKILL) as soon as the tests that use it are
done, even when a test fails half-way: `cluster_factory` stops a test's clusters when that test
ends, `module_cluster_factory` (for a module's shared `cluster` fixture) when the module's last test
ends. Idle clusters do not pile up while later tests run.

Every test here is marked `integration` (`pytest -m "not integration"` runs the unit tests). Under
pytest-xdist, run with `--dist loadfile` (as `make test` does): a module's tests then run on one
worker, one after the other, so a module's cluster is started once. (`--dist loadgroup` with
`xdist_group` marks would spread a module's other tests, but pytest-xdist 3.8.0 silently ignores
the groups under pytest 9.2: pytest-dev/pytest-xdist#1386.)

With `TOKENWEAVE_TEST_DB` set to a PostgreSQL server (`postgresql+asyncpg://USER@HOST:PORT`, as
`make test-postgres` does), every cluster's coordinator runs on a database of its own there,
created for it and dropped after it; otherwise on SQLite in its data dir. Tests read what the
coordinator stored through `query`, on either.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime
import pytest
from tokenizers import Tokenizer

from tokenweave.cli import LocalCluster
from tokenweave.contracts import Anvil, anvil_binary
from tokenweave.models import PreparedModel
from tokenweave.workloads import WindowPlan, document_embedding

ClusterFactory = Callable[..., LocalCluster]

HERE = Path(__file__).resolve().parent
GENESIS = HERE.parents[1] / "tokenweave" / "cli" / "data" / "genesis.txt"

_cluster_numbers = itertools.count()
#: A PostgreSQL server for the coordinators (see the module's doc); "" for SQLite.
TEST_DB = os.environ.get("TOKENWEAVE_TEST_DB", "").rstrip("/")
#: Test nodes: small batches on one thread each (several share 2 cores), and a short calibration
#: (it is most of a node's start-up CPU, and the suite starts about a hundred nodes).
NODE_ARGS = ("--batch-size", "8", "--threads", "1", "--calibration-windows", "1")
#: Test coordinators: no vetting of new nodes by default (every node of a test is new, so it would
#: run most shards twice); the tests of verification turn it on or verify everything.
COORDINATOR_ARGS = ("--vetting-results", "0")


def pytest_sessionstart(session: pytest.Session) -> None:
    if not TEST_DB:
        return
    try:
        _postgres("SELECT 1")
    except Exception as exc:
        pytest.exit(
            f"TOKENWEAVE_TEST_DB={TEST_DB}: no PostgreSQL answers there ({type(exc).__name__}: "
            f"{exc}); start it (pg_ctlcluster 15 main start) or unset TOKENWEAVE_TEST_DB",
            returncode=2,
        )


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the integration tests, and run them first: they are the long modules, and under
    `--dist loadfile` the short unit modules then fill the workers' gaps at the end instead of
    one long module running alone after the rest."""
    for item in items:
        if HERE not in item.path.parents:
            continue
        item.add_marker(pytest.mark.integration)
    items.sort(key=lambda item: HERE not in item.path.parents)  # stable: file order kept


@contextmanager
def _clusters(
    model_cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    """A factory of clusters, each stopped (all of them, even if one fails to stop) on exit."""
    with ExitStack() as stack:

        def make(
            nodes: int = 0,
            coordinator_args: Sequence[str] = (),
            node_args: Sequence[str] = NODE_ARGS,
        ) -> LocalCluster:
            number = next(_cluster_numbers)
            database: tuple[str, ...] = ()
            if TEST_DB:
                name = f"tokenweave_test_{os.getpid()}_{number}"
                _postgres(f'CREATE DATABASE "{name}"')
                # Registered before the cluster's stop, so run after it (last in, first out).
                stack.callback(_postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                database = ("--db", f"{TEST_DB}/{name}")
            cluster = LocalCluster(
                root=tmp_path_factory.mktemp(f"cluster{number}"),
                model_cache=model_cache,
                coordinator_args=(*COORDINATOR_ARGS, *database, *coordinator_args),
                node_args=tuple(node_args),
            )
            stack.callback(cluster.stop, timeout=20)
            if nodes:
                cluster.start(nodes)
            return cluster

        yield make


def _postgres(statement: str, database: str = "postgres") -> list[tuple[object, ...]]:
    """Run one statement on the TEST_DB server (asyncpg, the coordinator's own driver)."""
    import asyncpg

    async def run() -> list[tuple[object, ...]]:
        dsn = TEST_DB.replace("postgresql+asyncpg://", "postgresql://", 1) + "/" + database
        connection = await asyncpg.connect(dsn)
        try:
            return [tuple(row) for row in await connection.fetch(statement)]
        finally:
            await connection.close()

    return asyncio.run(run())


def query(cluster: LocalCluster, sql: str, *params: object) -> list[tuple[object, ...]]:
    """Rows of `sql` (`?` placeholders) read from the cluster coordinator's own database, on
    SQLite or PostgreSQL alike."""
    args = cluster.coordinator_args
    if "--db" not in args:
        path = cluster.root / "coordinator" / "coordinator.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return [tuple(row) for row in db.execute(sql, params).fetchall()]
    url = args[args.index("--db") + 1]
    numbered = iter(itertools.count(1))
    statement = re.sub(r"\?", lambda _: f"${next(numbered)}", sql)
    import asyncpg

    async def run() -> list[tuple[object, ...]]:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(row) for row in await connection.fetch(statement, *params)]
        finally:
            await connection.close()

    return asyncio.run(run())


@pytest.fixture
def cluster_factory(
    model_cache: Path, prepared: PreparedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    """Clusters of one test: stopped when the test ends."""
    with _clusters(model_cache, tmp_path_factory) as make:
        yield make


@pytest.fixture(scope="module")
def module_cluster_factory(
    model_cache: Path, prepared: PreparedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterFactory]:
    """Clusters shared by the tests of one module: stopped when its last test is done."""
    with _clusters(model_cache, tmp_path_factory) as make:
        yield make


def sample_documents() -> list[tuple[str, str]]:
    """Two documents: the first chapters of Genesis (~2,600 tokens) and a short one."""
    text = GENESIS.read_text(encoding="utf-8")
    return [
        ("genesis-1-4.txt", text[: text.index("Chapter 5")]),
        ("short.txt", "Let there be light."),
    ]


def direct_embeddings(
    prepared: PreparedModel, documents: Sequence[str], window: int, overlap: int
) -> list[tuple[list[tuple[int, int]], npt.NDArray[np.float32], npt.NDArray[np.float32]]]:
    """The reference: plain onnxruntime in this process, one window per run, no batching."""
    tokenizer = Tokenizer.from_file(str(prepared.tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    session = onnxruntime.InferenceSession(
        str(prepared.onnx_path), providers=["CPUExecutionProvider"]
    )
    plan = WindowPlan.validated(window, overlap, max_window=512)
    out = []
    for i, text in enumerate(documents):
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        spans = plan.spans(i, len(ids))
        rows = []
        for span in spans:
            window_ids = np.array([[cls_id, *ids[span.start : span.end], sep_id]], dtype=np.int64)
            (embedding,) = session.run(
                ["embeddings"],
                {"input_ids": window_ids, "attention_mask": np.ones_like(window_ids)},
            )
            rows.append(embedding[0])
        matrix = np.stack(rows).astype(np.float32)
        out.append(([(s.start, s.end) for s in spans], matrix, document_embedding(spans, matrix)))
    return out


def wait_until(what: str, check: Callable[[], object], timeout: float = 90.0) -> None:
    """Poll `check` until it is true; TimeoutError naming `what` past `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


def random_file(path: Path, size: int, seed: int) -> Path:
    """`size` random bytes (reproducible from `seed`) at `path`, parents created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    """A fresh anvil chain (blocks every 0.5 s), stopped after the test."""
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with Anvil(block_time=0.5) as node:
        yield node
