"""Cheating nodes with real processes: caught, unpaid and refused, and the job's output still
equal to plain onnxruntime's (crashes and stragglers are in test_resilience.py)."""

from __future__ import annotations

import numpy as np

from tokenweave.models import PreparedModel
from tokenweave.node import NodeIdentity

from .conftest import ClusterFactory, direct_embeddings, wait_until
from .test_resilience import SMALL_SHARDS, _ledger, _paid_once, _text


def test_a_cheating_node_is_caught_and_unpaid(
    cluster_factory: ClusterFactory, prepared: PreparedModel
) -> None:
    cluster = cluster_factory(nodes=2, coordinator_args=(*SMALL_SHARDS, "--verify-fraction", "1"))
    cheat = cluster.add_node(module="tests.integration.cheater")
    cluster.wait_for_nodes(3)
    cheater = NodeIdentity.load_or_create(cluster.root / "node2").address.lower()
    text = _text()
    with cluster.client() as client:
        result = client.embed([text], window=256, overlap=32).result()
        ((_, windows, _),) = direct_embeddings(prepared, [text], 256, 32)
        np.testing.assert_allclose(result.documents[0].window_embeddings, windows, atol=1e-5)
        nodes = {n.node_id: n for n in client.nodes()}
        assert nodes[cheater].verifications_failed > 0
        assert nodes[cheater].reputation < 1.0
        honest = [n for i, n in nodes.items() if i != cheater]
        assert all(n.verifications_failed == 0 and n.verifications_passed > 0 for n in honest)
        assert cheater not in {r[1] for r in _ledger(cluster, result.job.job_id)}
        client.close_epoch()
        assert client.rewards(cheater).tokens == 0
        assert all(client.rewards(n.node_id).tokens > 0 for n in honest)
    # Caught three times, its reputation fell below 0.2: it is refused and the daemon exits.
    wait_until("the cheater is refused", lambda: cheat.process.poll() is not None, timeout=60)
    assert "refused" in cheat.log_path.read_text()
    _paid_once(cluster, result)


def test_a_cheater_that_predicts_a_public_sample_is_caught(
    cluster_factory: ClusterFactory, prepared: PreparedModel
) -> None:
    """With the default sampling (10 %), a node that forges every output a public hash of the
    shard id would not check is still caught: the sample is keyed with the coordinator's secret,
    and a new node's work is all verified until it has a record."""
    cluster = cluster_factory(nodes=2, coordinator_args=(*SMALL_SHARDS, "--vetting-results", "10"))
    cluster.add_node(module="tests.integration.predicting_cheater")
    cluster.wait_for_nodes(3)
    cheater = NodeIdentity.load_or_create(cluster.root / "node2").address.lower()
    text = _text()
    with cluster.client() as client:
        result = client.embed([text], window=256, overlap=32).result()
        ((_, windows, _),) = direct_embeddings(prepared, [text], 256, 32)
        np.testing.assert_allclose(result.documents[0].window_embeddings, windows, atol=1e-5)
        nodes = {n.node_id: n for n in client.nodes()}
        assert nodes[cheater].verifications_failed > 0
        assert nodes[cheater].withheld
        assert cheater not in {r[1] for r in _ledger(cluster, result.job.job_id) if not r[3]}
