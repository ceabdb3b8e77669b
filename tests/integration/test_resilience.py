"""Crashes and stragglers with real processes: no shard lost, none paid twice (cheats are in
test_cheats.py)."""

from __future__ import annotations

import signal

import numpy as np

from tokenweave.cli import LocalCluster
from tokenweave.client import EmbedJob, EmbedResult, JobStatus

from .conftest import GENESIS, ClusterFactory, query, wait_until

#: Small shards, so that a job is many of them and a crash lands in the middle.
SMALL_SHARDS = ("--windows-per-shard", "4")


def _text() -> str:
    genesis = GENESIS.read_text(encoding="utf-8")
    return genesis[: genesis.index("Chapter 9")]  # ~7,000 tokens: ~30 windows, ~8 shards


def _started(job: EmbedJob, shards: int = 2) -> None:
    wait_until(f"{shards} shards done", lambda: job.refresh().shards_done >= shards, 120)
    assert job.info.status is JobStatus.RUNNING, "the job finished before the fault"


def _same(a: EmbedResult, b: EmbedResult) -> None:
    for x, y in zip(a.documents, b.documents, strict=True):
        np.testing.assert_array_equal(x.spans, y.spans)
        np.testing.assert_allclose(x.window_embeddings, y.window_embeddings, rtol=0, atol=1e-5)


def _ledger(cluster: LocalCluster, job_id: str) -> list[tuple[str, str, int, bool]]:
    """(shard, address, tokens, withheld) of every ledger row of the job, read from the
    coordinator's own database."""
    rows = query(
        cluster, "SELECT shard_id, address, tokens, withheld FROM ledger WHERE job_id = ?", job_id
    )
    return [(str(s), str(a), int(str(t)), bool(w)) for s, a, t, w in rows]


def _paid_once(cluster: LocalCluster, result: EmbedResult) -> None:
    """Every shard paid once (rows withheld from a caught node are no payment)."""
    rows = [r for r in _ledger(cluster, result.job.job_id) if not r[3]]
    shards = [r[0] for r in rows]
    assert len(shards) == len(set(shards)) == result.job.shards_total
    assert sum(r[2] for r in rows) == result.job.tokens_processed


def test_a_node_killed_mid_job_loses_nothing(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(nodes=3, coordinator_args=SMALL_SHARDS)
    with cluster.client() as client:
        clean = client.embed([_text()]).result()
        job = client.embed([_text()])
        _started(job)
        cluster.nodes[0].kill()
        result = job.result()
    _same(result, clean)
    _paid_once(cluster, result)


def test_a_coordinator_killed_mid_job_resumes_it(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(nodes=2, coordinator_args=SMALL_SHARDS)
    assert cluster.coordinator is not None
    with cluster.client() as client:
        clean = client.embed([_text()]).result()
        job = client.embed([_text()])
        _started(job)
        cluster.coordinator.kill()
        cluster.start_coordinator()  # same database, same port: nodes reconnect by themselves
        result = job.result()  # the SDK's watch retries through the outage
    _same(result, clean)
    _paid_once(cluster, result)
    assert "recovered" in cluster.coordinator.log_path.read_text()


def test_a_stalled_node_gets_a_backup(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(
        nodes=2,
        coordinator_args=(
            *SMALL_SHARDS,
            "--heartbeat-misses",
            "1000",  # the stalled node stays "alive": only the straggler check can save the job
            "--straggler-factor",
            "1.5",
            "--straggler-slack-s",
            "1",
        ),
    )
    stalled = cluster.nodes[0]
    with cluster.client() as client:
        clean = client.embed([_text()]).result()
        job = client.embed([_text()])
        _started(job, shards=1)
        stalled.process.send_signal(signal.SIGSTOP)
        try:
            result = job.result()
        finally:
            stalled.process.send_signal(signal.SIGCONT)
    _same(result, clean)
    _paid_once(cluster, result)
    assert cluster.coordinator is not None
    assert "past its deadline" in cluster.coordinator.log_path.read_text()
