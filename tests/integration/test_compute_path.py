"""The compute path end to end: real coordinator and node processes over gRPC on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tokenweave.cli import LocalCluster
from tokenweave.client import JobStatus
from tokenweave.models import PreparedModel

from .conftest import NODE_ARGS, ClusterFactory, direct_embeddings, sample_documents

WINDOW, OVERLAP = 64, 16


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    return module_cluster_factory(nodes=3, coordinator_args=("--windows-per-shard", "4"))


def test_one_node_three_nodes_and_direct_onnxruntime_agree(
    cluster: LocalCluster, cluster_factory: ClusterFactory, prepared: PreparedModel
) -> None:
    docs = sample_documents()
    reference = direct_embeddings(prepared, [t for _, t in docs], WINDOW, OVERLAP)

    results = {}
    # The lone node runs three shards at once, their windows joined by the dynamic batcher (as
    # a GPU node's are): the vectors must not change.
    alone = cluster_factory(
        nodes=1,
        coordinator_args=("--windows-per-shard", "4"),
        node_args=(*NODE_ARGS, "--concurrent-shards", "3", "--batch-delay-ms", "20"),
    )
    for nodes, on in ((3, cluster), (1, alone)):
        with on.client() as client:
            results[nodes] = client.embed(docs, window=WINDOW, overlap=OVERLAP).result()
    alone.stop()

    three = results[3]
    assert three.job.status is JobStatus.SUCCEEDED
    assert len(three.job.nodes) == 3, "every node should have taken a share"
    assert sum(n.shards for n in three.job.nodes) == three.job.shards_total
    assert len(results[1].job.nodes) == 1

    for result in results.values():
        assert [d.name for d in result.documents] == [name for name, _ in docs]
        for doc, (spans, windows, embedding) in zip(result.documents, reference, strict=True):
            assert doc.spans.tolist() == [list(s) for s in spans]
            assert doc.tokens == spans[-1][1]
            np.testing.assert_allclose(doc.window_embeddings, windows, rtol=0, atol=1e-5)
            np.testing.assert_allclose(doc.embedding, embedding, rtol=0, atol=1e-5)
            assert np.linalg.norm(doc.embedding) == pytest.approx(1.0, abs=1e-5)
    for a, b in zip(results[3].documents, results[1].documents, strict=True):
        np.testing.assert_allclose(a.window_embeddings, b.window_embeddings, rtol=0, atol=1e-5)


def test_windows_map_back_to_the_text(cluster: LocalCluster) -> None:
    name, text = sample_documents()[0]
    with cluster.client() as client:
        result = client.embed([(name, text)], window=WINDOW, overlap=OVERLAP).result()
    doc = result.documents[0]
    assert doc.char_spans[0][0] == 0
    assert doc.char_spans[-1][1] == len(text.rstrip())
    assert all(a[0] < b[0] for a, b in zip(doc.char_spans, doc.char_spans[1:], strict=False))


def test_watch_reports_progress_until_done(cluster: LocalCluster) -> None:
    with cluster.client() as client:
        job = client.embed(sample_documents(), window=WINDOW, overlap=OVERLAP)
        events = list(job.watch())
    assert events[-1].status is JobStatus.SUCCEEDED
    assert events[-1].shards_done == events[-1].shards_total
    done = [e.shards_done for e in events]
    assert done == sorted(done)
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences))


def _cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenweave.cli", *args, "--coordinator", cluster.address],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **cluster.client_env(), "TOKENWEAVE_COORDINATOR": "127.0.0.1:1"},
        check=False,
    )


def test_cli_submit_json(cluster: LocalCluster, tmp_path: Path) -> None:
    files = []
    for name, text in sample_documents():
        path = tmp_path / name
        path.write_text(text)
        files.append(str(path))
    proc = _cli(cluster, "submit", "embed", *files, "--json", "--window", "64", "--query", "light")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["status"] == "SUCCEEDED"
    assert len(payload["job_id"]) == 32
    assert [d["name"] for d in payload["documents"]] == ["genesis-1-4.txt", "short.txt"]
    doc = payload["documents"][0]
    assert doc["tokens"] == doc["windows"][-1]["end"]
    assert {"start", "end", "embedding"} <= set(doc["windows"][0])
    assert len(doc["windows"][0]["embedding"]) == 384
    assert len(doc["embedding"]) == 384
    assert sum(n["tokens"] for n in payload["nodes"]) == payload["tokens_processed"]
    assert all(n["address"].startswith("0x") for n in payload["nodes"])
    assert len(payload["query"]["passages"]) == 3
    assert {p["document"] for p in payload["query"]["passages"]} <= {"genesis-1-4.txt", "short.txt"}
    # Ids: tables show a prefix, and any unique prefix is taken back.
    job_id = payload["job_id"]
    table = _cli(cluster, "jobs")
    assert f"{job_id[:8]}…" in table.stdout
    assert job_id not in table.stdout
    assert job_id in _cli(cluster, "jobs", "--wide").stdout
    again = _cli(cluster, "cancel", job_id[:10])
    assert again.returncode == 4  # refused: it has finished; but the prefix was understood
    assert f"job {job_id} has already SUCCEEDED" in " ".join(again.stderr.split())
    unknown = _cli(cluster, "cancel", "zzzz")
    assert unknown.returncode == 4
    assert "no job id starts with 'zzzz'" in unknown.stderr


def test_cli_tables_and_json(cluster: LocalCluster) -> None:
    nodes = _cli(cluster, "nodes", "--json")
    assert nodes.returncode == 0, nodes.stderr
    listed = json.loads(nodes.stdout)
    assert sum(n["online"] for n in listed) == 3
    assert all(n["models"]["all-minilm-l6-v2"] > 0 for n in listed)
    assert all("CPUExecutionProvider" in n["providers"] for n in listed)

    jobs = _cli(cluster, "jobs", "--json")
    assert jobs.returncode == 0, jobs.stderr
    assert all(j["status"] in {"SUCCEEDED", "RUNNING", "QUEUED"} for j in json.loads(jobs.stdout))

    table = _cli(cluster, "nodes")
    assert table.returncode == 0
    assert "online" in table.stdout


def test_cli_reports_an_unreachable_coordinator(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tokenweave.cli", "jobs", "--coordinator", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3  # unreachable
    assert "nothing answers at 127.0.0.1:1" in " ".join(proc.stderr.split())


def test_jobs_survive_a_coordinator_restart(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(nodes=1)
    with cluster.client() as client:
        job = client.embed(["In the beginning was the word."]).result().job
    assert cluster.coordinator is not None
    assert cluster.coordinator.stop() == 0
    cluster.start_coordinator()
    with cluster.client() as client:
        again = client.job(job.job_id).info
        assert again.status is JobStatus.SUCCEEDED
        assert again.tokens == job.tokens
        assert client.job(job.job_id).result().documents[0].embedding.shape == (384,)


def test_doctor_checks_what_a_node_needs(cluster: LocalCluster, tmp_path: Path) -> None:
    proc = _cli(cluster, "doctor", "--json", "--data-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    checks = {c["what"]: c for c in json.loads(proc.stdout)}
    assert checks["python"]["status"] == "ok"
    assert "CPUExecutionProvider" in checks["onnx runtime"]["detail"]
    assert checks["model all-minilm-l6-v2"]["status"] == "ok"
    assert checks["coordinator"]["status"] == "ok"
    assert "nodes online" in checks["coordinator"]["detail"]
    assert checks["chain"]["status"] == "ok"
    gone = subprocess.run(
        [sys.executable, "-m", "tokenweave.cli", "doctor", "--json", "--coordinator",
         "127.0.0.1:9"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert gone.returncode == 1
    failed = {c["what"]: c for c in json.loads(gone.stdout)}["coordinator"]
    assert failed["status"] == "fail"
    assert "nothing answers at 127.0.0.1:9" in failed["detail"]
