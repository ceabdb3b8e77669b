"""Node daemons joining, stopping cleanly mid-job, and refusing a model file they cannot trust."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tokenweave.client import JobStatus
from tokenweave.models import PreparedModel
from tokenweave.storage import CID, RAW, BlockExchange, BlockStore

from .conftest import GENESIS, ClusterFactory


def test_sigterm_mid_job_hands_work_back_and_the_job_completes(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory(nodes=2, coordinator_args=("--windows-per-shard", "2"))
    text = GENESIS.read_text(encoding="utf-8")[:40_000]
    with cluster.client() as client:
        job = client.embed([("genesis.txt", text)], window=128, overlap=16)
        leaving = cluster.nodes[1]
        for info in job.watch():
            if info.shards_done >= 2:
                leaving.process.send_signal(signal.SIGTERM)
                break
        assert leaving.process.wait(timeout=60) == 0, leaving.tail()
        result = job.result()
        log = leaving.log_path.read_text()
    assert result.job.status is JobStatus.SUCCEEDED
    assert result.job.shards_done == result.job.shards_total
    assert sum(n.shards for n in result.job.nodes) == result.job.shards_total
    assert "node stopped" in log
    assert result.documents[0].spans[-1][1] == result.documents[0].tokens


def test_a_node_refuses_a_model_file_whose_hash_does_not_match(
    prepared: PreparedModel, tmp_path: Path, cluster_factory: ClusterFactory
) -> None:
    cluster = cluster_factory()
    cluster.start_coordinator()
    cache = tmp_path / "cache"
    shutil.copytree(prepared.onnx_path.parent.parent, cache)
    onnx = cache / prepared.name / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in a weight
    onnx.write_bytes(bytes(data))

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenweave.cli",
            "node",
            "--coordinator",
            cluster.address,
            "--data-dir",
            str(tmp_path / "node"),
            "--model-cache",
            str(cache),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **cluster.client_env(), "TOKENWEAVE_MODEL_CACHE": ""},
        check=False,
    )
    assert proc.returncode == 4  # refused
    assert "sha256" in proc.stderr
    assert str(onnx) in proc.stderr.replace("\n", "")
    with cluster.client() as client:
        assert client.nodes() == []


def test_a_node_keeps_its_identity_across_restarts(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(nodes=1)
    with cluster.client() as client:
        first = {n.node_id for n in client.nodes()}
        assert cluster.nodes[0].stop() == 0
        deadline = time.monotonic() + 30
        while any(n.online for n in client.nodes()):
            assert time.monotonic() < deadline, "the stopped node still shows online"
            time.sleep(0.2)
        cluster.add_node(data_dir=cluster.root / "node0")
        cluster.wait_for_nodes(1)
        assert {n.node_id for n in client.nodes()} == first
        result = client.embed(["And God said, Let there be light."]).result()
    assert np.linalg.norm(result.documents[0].embedding) > 0.99


def test_a_node_serves_its_blocks_over_libp2p(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(nodes=1)
    with cluster.client() as client:
        [node] = client.nodes()
    assert node.peer_id.startswith("16Uiu2"), "a secp256k1 peer id: the node's own key"
    assert node.multiaddrs
    assert node.multiaddrs[0].startswith("/ip4/127.0.0.1/tcp/")
    block = b"a dataset block" * 1000
    cid = CID.of(RAW, block)
    BlockStore(cluster.root / "node0" / "blocks").put(cid, block)
    with BlockExchange(timeout=20) as exchange:
        assert exchange.fetch(cid, node.multiaddrs) == block
