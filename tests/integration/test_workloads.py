"""A workload the engine has never heard of, through real coordinator and node processes."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from tokenweave.cli import LocalCluster
from tokenweave.errors import InvalidArgumentError
from tokenweave.models import PreparedModel, load_tokenizer

from .conftest import GENESIS, NODE_ARGS

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = "tests.integration.count_workload"


@pytest.fixture(scope="module")
def cluster(
    model_cache: Path, prepared: PreparedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """Three nodes and a coordinator that load the plugin; every shard is verified on a second
    node, and every run takes a second."""
    cluster = LocalCluster(
        root=tmp_path_factory.mktemp("workloads"),
        model_cache=model_cache,
        env={
            "TOKENWEAVE_PLUGINS": PLUGIN,
            "TOKENWEAVE_TEST_COUNT_DELAY_S": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        },
        # Runs take a second; a run still out after 6 s gets a backup copy, long before a silent
        # node would be given up (10 missed heartbeats), and every claimed speed is believed.
        coordinator_args=(
            "--verify-fraction",
            "1",
            "--straggler-slack-s",
            "6",
            "--new-node-tokens-per-second",
            "1e9",
            "--heartbeat-misses",
            "10",
        ),
        node_args=NODE_ARGS,
    )
    try:
        yield cluster.start(3)
    finally:
        cluster.stop(timeout=20)


def test_a_plugin_workload_runs_with_verification_and_backups(
    cluster: LocalCluster, prepared: PreparedModel
) -> None:
    text = GENESIS.read_text(encoding="utf-8")
    documents = [("genesis-1", text[:5000]), ("genesis-2", text[5000:12000]), ("short", "Amen.")]
    stalled = cluster.nodes[0].process
    with cluster.client() as client:
        job = client.submit("count", documents)
        stalled.send_signal(signal.SIGSTOP)  # its runs stall: they get backup copies elsewhere
        try:
            outputs = job.outputs()
        finally:
            stalled.send_signal(signal.SIGCONT)
        tokenizer: Tokenizer = load_tokenizer(prepared)
        expected = [len(tokenizer.encode(t, add_special_tokens=False).ids) for _, t in documents]
        assert [int(o.outputs["tokens"]) for o in outputs] == expected
        assert [o.name for o in outputs] == [name for name, _ in documents]
        info = job.info
        assert info.workload == "count"
        assert info.shards_done == info.shards_total == len(documents)
        nodes = {n.node_id: n for n in client.nodes()}
    # Every shard ran on at least two nodes and was compared: each agreement is a passed
    # verification, recorded by the same engine that verifies embeddings.
    assert sum(n.verifications_passed for n in nodes.values()) >= 2 * len(documents)
    assert all(n.verifications_failed == 0 for n in nodes.values())
    log = (cluster.root / "logs" / "coordinator.log").read_text()
    assert "a backup copy runs elsewhere" in log


def test_a_workload_the_coordinator_does_not_know_is_refused(cluster: LocalCluster) -> None:
    with cluster.client() as client, pytest.raises(InvalidArgumentError, match="unknown workload"):
        client.submit("translate", ["hello"])
    with cluster.client() as client, pytest.raises(InvalidArgumentError, match="takes no options"):
        client.submit("count", ["hello"], options={"window": 3})
