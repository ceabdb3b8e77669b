"""Any ONNX model on the network: registered by content, fetched by a node from its peers, run
through the Open Inference Protocol by Triton's own client, and equal to a bare session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests

from tokenweave.cli import LocalCluster
from tokenweave.models import text_direction_model

from .. import onnx_models
from .conftest import NODE_ARGS, ClusterFactory
from .test_generate import cli

MODEL = "text-direction"
HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    """A node holding the model's blocks (it started before the model was registered, so it does
    not serve it), and a node started after: it fetches the model from the first and serves it."""
    cluster = module_cluster_factory(
        nodes=1,
        coordinator_args=("--http-listen", "127.0.0.1:0"),
        node_args=(*NODE_ARGS, "--metrics-listen", "127.0.0.1:0"),
    )
    added = cli(cluster, "models", "add", str(text_direction_model()), "--name", MODEL, "--json")
    assert added.returncode == 0, added.stderr
    cluster.add_node()
    cluster.wait_for_nodes(2)
    return cluster


def triton(
    cluster: LocalCluster, script: str, address: str, images: np.ndarray, tmp_path: Path
) -> dict[str, Any]:
    """Run one of Triton's clients (a script beside this file, in a process of its own) on
    `images`: what it saw, its outputs in tmp_path/out.npy; the server and model were ready."""
    np.save(tmp_path / "in.npy", images)
    run = subprocess.run(
        [sys.executable, str(HERE / script), address, str(cluster.ca), cluster.api_key, MODEL,
         str(tmp_path / "in.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    seen: dict[str, Any] = json.loads(run.stdout)
    assert (seen["live"], seen["ready"], seen["model_ready"]) == (True, True, True)
    return seen


def test_a_registered_model_is_fetched_from_peers_and_listed(cluster: LocalCluster) -> None:
    server = cluster.nodes[1].log_path.read_text()
    assert f"model {MODEL}: 585532 bytes fetched from peers" in server
    listed = cli(cluster, "models", "ls", "--json")
    assert listed.returncode == 0, listed.stderr
    [model] = [m for m in json.loads(listed.stdout) if m["name"] == MODEL]
    assert model["kind"] == "onnx"
    assert len(model["node_ids"]) == 1, "the node started after registration serves it"
    assert model["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]


def test_tritons_grpc_client_gets_what_a_bare_session_computes(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    images = np.random.default_rng(3).uniform(-1, 1, size=(10, 3, 48, 192)).astype(np.float32)
    (tmp_path / "unserved.onnx").write_bytes(onnx_models.classifier())
    added = cli(cluster, "models", "add", str(tmp_path / "unserved.onnx"))
    assert added.returncode == 0, added.stderr  # registered after every node started
    seen = triton(cluster, "triton_grpc.py", cluster.address, images, tmp_path)
    assert seen["id"] == "r-1"
    assert seen["metadata"]["platform"] == "onnxruntime_onnx"
    bare = ort.InferenceSession(str(text_direction_model()), providers=["CPUExecutionProvider"])
    expected = bare.run(None, {"x": images})[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=0, atol=1e-5)
    refused = seen["refused"]
    assert refused["wrong_name"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "no input 'pixels'" in refused["wrong_name"][1]
    assert "input 'x' is INT64 (int64); the model takes FP32" in refused["wrong_dtype"][1]
    assert "has 5 at dimension 1; the model takes 3" in refused["wrong_shape"][1]
    assert refused["unknown_model"][0] == "StatusCode.NOT_FOUND"
    assert refused["unserved"][0] == "StatusCode.UNAVAILABLE"
    assert seen["text_metadata"]["inputs"] == [
        {"name": "text", "datatype": "BYTES", "shape": ["-1"]}
    ]
    with cluster.client() as client:
        expected_text = client.embed(["Let there be light.", "In the beginning"]).result()
    np.testing.assert_allclose(
        np.load(tmp_path / "out-text.npy"),
        np.stack([d.embedding for d in expected_text.documents]),
        rtol=0,
        atol=1e-6,
    )
    assert "no connected node serves model unserved" in refused["unserved"][1]


def test_tritons_http_client_uses_the_v2_rest_endpoints(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    assert cluster.http_url is not None
    images = np.random.default_rng(4).uniform(-1, 1, size=(3, 3, 48, 192)).astype(np.float32)
    seen = triton(cluster, "triton_http.py", cluster.http_url, images, tmp_path)
    assert seen["metadata"]["inputs"][0]["datatype"] == "FP32"
    assert seen["json_equals_binary"], "JSON and binary tensors carry the same numbers"
    bare = ort.InferenceSession(str(text_direction_model()), providers=["CPUExecutionProvider"])
    expected = bare.run(None, {"x": images})[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), expected, rtol=0, atol=1e-5)
    assert seen["refused"]["unknown_model"][0] == "404"
    assert "unknown model 'no-such-model'" in seen["refused"]["unknown_model"][1]
    assert seen["refused"]["short_data"][0] == "400"


def test_a_model_maps_a_dataset_of_tensors_to_a_dataset_of_outputs(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """`submit map`: a folder of .npy batches (one bigger than a task) and an .npz archive,
    stored on the network; the outputs come back as a new dataset, file for file, equal to a
    bare session's."""
    rng = np.random.default_rng(5)
    inputs = tmp_path / "crops"
    (inputs / "more").mkdir(parents=True)
    batches = {
        "a.npy": rng.uniform(-1, 1, (20, 3, 48, 192)).astype(np.float32),
        "more/b.npy": rng.uniform(-1, 1, (1, 3, 48, 192)).astype(np.float32),
    }
    for name, batch in batches.items():
        np.save(inputs / name, batch)
    archive = rng.uniform(-1, 1, (2, 3, 48, 192)).astype(np.float32)
    np.savez(inputs / "c.npz", x=archive)
    (inputs / "notes.txt").write_text("not a tensor: skipped")
    put = cli(cluster, "data", "put", str(inputs), "--json")
    assert put.returncode == 0, put.stderr
    root = json.loads(put.stdout)["root"]
    run = cli(
        cluster, "submit", "map", "--model", MODEL, "--dataset", root, "--rows-per-task", "16",
        "--json",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    mapped = json.loads(run.stdout)
    assert mapped["files"] == ["a.npy", "c.npz", "more/b.npy"]
    got = cli(cluster, "data", "get", mapped["dataset"], "--output", str(tmp_path / "out"))
    assert got.returncode == 0, got.stderr
    bare = ort.InferenceSession(str(text_direction_model()), providers=["CPUExecutionProvider"])
    out = tmp_path / "out"
    for name, batch in [*batches.items(), ("c.npz", archive)]:
        [result] = np.load(next(out.rglob(name.rsplit(".", 1)[0] + ".npz"))).values()
        np.testing.assert_allclose(result, bare.run(None, {"x": batch})[0], rtol=0, atol=1e-5)
    with cluster.client() as client:
        info = client.job(mapped["job"]).refresh()
    assert info.shards_total == 2 + 1 + 1, "20 rows in two tasks of 16 and 4; one each for the rest"


def test_the_coordinator_exports_prometheus_metrics(cluster: LocalCluster) -> None:
    """`/metrics` on the HTTP port: what the jobs of this module did, in Prometheus' text
    format (read back with prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    assert cluster.http_url is not None
    response = requests.get(f"{cluster.http_url}/metrics", verify=str(cluster.ca), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }

    def total(name: str) -> float:
        return sum(v for (n, _), v in samples.items() if n == name)

    assert samples[("tokenweave_nodes_connected", ())] == 2
    assert samples[("tokenweave_jobs", (("state", "SUCCEEDED"),))] >= 1
    assert total("tokenweave_node_shards_total") >= 1
    assert total("tokenweave_node_tokens_total") > 0
    assert total("tokenweave_model_tokens_total") == total("tokenweave_node_tokens_total")
    assert total("tokenweave_node_online") == 2
    assert samples[("tokenweave_lease_wait_seconds_count", ())] >= 1
    assert ("tokenweave_blocks_below_target", ()) in samples


def test_a_node_exports_prometheus_metrics(cluster: LocalCluster) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    address = (cluster.root / "node0" / "metrics_address").read_text().strip()
    response = requests.get(f"http://{address}/metrics", timeout=30)
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    assert 0 <= samples[("tokenweave_node_cpu_utilisation_ratio", ())] <= 1
    assert samples[("tokenweave_node_resident_memory_bytes", ())] > 0
    assert samples[("tokenweave_node_shards_completed_total", ())] >= 0
    assert samples[("tokenweave_node_model_speed", (("model", "all-minilm-l6-v2"),))] > 0
    assert samples[("tokenweave_node_model_load_seconds", (("model", "all-minilm-l6-v2"),))] > 0
