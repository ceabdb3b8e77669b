"""Hostile nodes with real processes (tests/integration/hostile.py): each is caught or
contained, the job's output equals a clean run, and nothing is paid for forged work."""

from __future__ import annotations

import numpy as np

from tokenweave.cli import LocalCluster
from tokenweave.client import EmbedResult
from tokenweave.models import PreparedModel
from tokenweave.node import NodeIdentity

from .conftest import ClusterFactory, direct_embeddings, query, wait_until
from .test_resilience import SMALL_SHARDS, _ledger
from .test_resilience import _text as _long_text

HOSTILE = "tests.integration.hostile"
#: New nodes are vetted (all their work checked) until 10 of their results agreed with others'.
VETTING = ("--vetting-results", "10")


def _text() -> str:
    """About 3,500 tokens: some 15 windows in 4 shards."""
    text = _long_text()
    return text[: len(text) // 2]


def _node_counts(cluster: LocalCluster, address: str) -> dict[str, float]:
    columns = ("reputation", "shards_failed", "shards_abandoned", "verifications_failed")
    ((*values,),) = query(
        cluster, f"SELECT {', '.join(columns)} FROM nodes WHERE address = ?", address
    )
    return dict(zip(columns, values, strict=True))


def _address(cluster: LocalCluster, index: int) -> str:
    return NodeIdentity.load_or_create(cluster.root / f"node{index}").address.lower()


def _as_direct(result: EmbedResult, prepared: PreparedModel, text: str) -> None:
    ((_, windows, _),) = direct_embeddings(prepared, [text], 256, 32)
    np.testing.assert_allclose(result.documents[0].window_embeddings, windows, atol=1e-5)


def _unpaid(cluster: LocalCluster, job_id: str, address: str) -> None:
    assert address not in {r[1] for r in _ledger(cluster, job_id) if not r[3]}


def test_sybils_that_fail_everything_and_a_churner_do_not_hold_a_job_back(
    cluster_factory: ClusterFactory, prepared: PreparedModel
) -> None:
    """One honest node among hostile ones (one cluster, to spare the suite's time):

    * three sybils claim 9e9 tokens/s and fail whatever they get: their claims are capped,
      their failures cost them reputation and a doubling rest and count a third towards failing
      a shard (three failures used to fail the job);
    * a churner registers again the moment it hangs up on its work: each time it rests twice as
      long before it gets more, so it holds a few shards in all (48 hang-ups in a job without
      rests, 3 with them).

    The job finishes on the honest node with the true output, and no hostile node is paid."""
    cluster = cluster_factory(nodes=1, coordinator_args=(*SMALL_SHARDS, *VETTING))
    for _ in range(3):
        cluster.add_node("--hostile", "failing", module=HOSTILE)
    churner = cluster.add_node("--hostile", "churner", module=HOSTILE)
    cluster.wait_for_nodes(5)
    text = _text()
    with cluster.client() as client:
        result = client.embed([text], window=256, overlap=32).result()
    _as_direct(result, prepared, text)
    for index in (1, 2, 3, 4):
        _unpaid(cluster, result.job.job_id, _address(cluster, index))
    for index in (1, 2, 3):
        counts = _node_counts(cluster, _address(cluster, index))
        if counts["shards_failed"]:
            assert counts["reputation"] < 1.0
    sessions = churner.log_path.read_text().count("hanging up on purpose")
    assert _node_counts(cluster, _address(cluster, 4))["shards_abandoned"] >= 1, "it took work"
    assert sessions <= 8, f"the churner hung up on work {sessions} times"


def test_a_random_vector_node_on_a_two_node_network_is_caught_by_the_referee(
    cluster_factory: ClusterFactory, prepared: PreparedModel
) -> None:
    """Two nodes, one of which answers random vectors: every dispute has no third node, so the
    coordinator runs the shard itself and decides. The job finishes with the true output, the
    liar is paid nothing and, caught three times, is refused."""
    cluster = cluster_factory(nodes=1, coordinator_args=(*SMALL_SHARDS, *VETTING))
    liar = cluster.add_node("--hostile", "random", module=HOSTILE)
    cluster.wait_for_nodes(2)
    text = _text()
    with cluster.client() as client:
        result = client.embed([text], window=256, overlap=32).result()
    _as_direct(result, prepared, text)
    _unpaid(cluster, result.job.job_id, _address(cluster, 1))
    assert _node_counts(cluster, _address(cluster, 1))["verifications_failed"] > 0
    wait_until("the liar is refused", lambda: liar.process.poll() is not None, timeout=60)
    assert cluster.coordinator is not None
    assert "the coordinator runs it" in cluster.coordinator.log_path.read_text()
