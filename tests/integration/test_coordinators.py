"""Several coordinators, one network: three coordinator processes share one PostgreSQL database
and one chain (anvil), each with a node of its own that knows all three. One coordinator is
killed with SIGKILL during a job: the job finishes through the other two, each shard paid once,
its node fails over, another coordinator takes the lead of settlement, and the epoch is posted
once. Needs PostgreSQL: it runs in `make test-postgres` (TOKENWEAVE_TEST_DB)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tokenweave.cli import LocalCluster
from tokenweave.cli._rewards_cmd import wait_settled
from tokenweave.client import JobStatus
from tokenweave.contracts import ANVIL_DEV_KEYS, Anvil, Deployment, RewardContracts, RpcChain
from tokenweave.models import PreparedModel

from .conftest import (
    COORDINATOR_ARGS,
    NODE_ARGS,
    TEST_DB,
    _postgres,
    direct_embeddings,
    query,
    wait_until,
)
from .test_resilience import _text

pytestmark = pytest.mark.skipif(
    not TEST_DB, reason="several coordinators share a PostgreSQL database: make test-postgres"
)

LEADS = "leads epoch settlement now"


@pytest.fixture
def database() -> Iterator[str]:
    name = f"tokenweave_test_{os.getpid()}_coordinators"
    _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _postgres(f'CREATE DATABASE "{name}"')
    try:
        yield f"{TEST_DB}/{name}"
    finally:
        _postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _log(cluster: LocalCluster) -> str:
    assert cluster.coordinator is not None
    return cluster.coordinator.log_path.read_text(errors="replace")


def _instance(cluster: LocalCluster) -> str:
    return (cluster.root / "coordinator" / "coordinator_id").read_text().strip()


def test_a_coordinator_killed_mid_job(
    model_cache: Path,
    prepared: PreparedModel,
    tmp_path_factory: pytest.TempPathFactory,
    anvil: Anvil,
    database: str,
) -> None:
    chain = (
        "--chain", anvil.url,
        "--chain-key", "0x" + ANVIL_DEV_KEYS[0].hex(),
        "--confirmations", "1",
        "--epoch-seconds", "0",
    )  # fmt: skip
    args = (*COORDINATOR_ARGS, "--db", database, "--verify-fraction", "0", *chain)
    clusters = [
        LocalCluster(
            root=tmp_path_factory.mktemp(f"coordinator{i}"),
            model_cache=model_cache,
            coordinator_args=(*args, "--windows-per-shard", "2"),
            node_args=NODE_ARGS,
            tls=False,  # one CA per cluster: the nodes of this test must trust all three
        )
        for i in range(3)
    ]
    try:
        first, second, third = clusters
        first.start_coordinator()  # deploys the contracts; the others use its deployment
        wait_until("the first coordinator leads settlement", lambda: LEADS in _log(first), 30)
        for cluster in (second, third):
            (cluster.root / "coordinator").mkdir(parents=True, exist_ok=True)
            shutil.copy(
                first.root / "coordinator" / "deployment.json",
                cluster.root / "coordinator" / "deployment.json",
            )
            cluster.start_coordinator()
        addresses = [c.address for c in clusters]
        for i, cluster in enumerate(clusters):  # each starts with its own, then the others
            cluster.add_node("--coordinator", ",".join(addresses[i:] + addresses[:i]))
        for cluster in clusters:
            cluster.wait_for_nodes(1)

        text = _text()
        submitted = second.client().embed([text], window=128, overlap=16)
        # Kill the first coordinator while it holds some of the job's shards unfinished.
        doomed = _instance(first)
        wait_until(
            "the first coordinator holds shards of the job",
            lambda: query(
                first,
                "SELECT count(*) FROM shards WHERE job_id = ? AND owner = ? "
                "AND state IN ('PENDING', 'LEASED')",
                submitted.id,
                doomed,
            )[0][0],
            60,
        )
        assert first.coordinator is not None
        first.coordinator.kill()

        # Progress reaches a client of another coordinator than the one it was submitted to.
        seen = [info for info in third.client().job(submitted.id).watch()]
        assert seen[-1].status is JobStatus.SUCCEEDED, seen[-1]
        assert len({info.shards_done for info in seen}) > 1, "progress streamed"
        result = submitted.result()  # through the coordinator it was submitted to
        ((_, windows, _),) = direct_embeddings(prepared, [text], 128, 16)
        np.testing.assert_allclose(result.documents[0].window_embeddings, windows, atol=1e-5)

        job = result.job
        rows = query(
            second,
            "SELECT shard_id, count(*) FROM ledger WHERE job_id = ? GROUP BY shard_id",
            job.job_id,
        )
        assert len(rows) == job.shards_total, "a ledger row for every shard"
        assert {count for _, count in rows} == {1}, "one ledger row per shard"
        owners = query(second, "SELECT DISTINCT owner FROM shards WHERE job_id = ?", job.job_id)
        assert doomed not in {owner for (owner,) in owners}, "its shards went to the living"
        assert query(
            second, "SELECT count(*) FROM coordinators WHERE coordinator_id = ?", doomed
        ) == [(0,)]

        # The first coordinator's node went on with the next one of its list.
        node = first.nodes[0]
        wait_until(
            "the node failed over", lambda: f"registered with {addresses[1]}" in node.tail(200)
        )

        # Settlement: exactly one of the living took the lead; the epoch is posted once.
        client = second.client()
        epoch = client.close_epoch()
        assert epoch is not None
        settled = wait_settled(client, epoch.epoch, timeout=60)
        leaders = [c for c in (second, third) if LEADS in _log(c)]
        assert len(leaders) == 1, [c.root for c in leaders]
        deployment = Deployment.load(first.root / "coordinator" / "deployment.json")
        contracts = RewardContracts(RpcChain(anvil.url), deployment)
        posted = contracts.distributor.events.RootPosted().get_logs(
            from_block=deployment.block_number
        )
        assert [log["args"]["epoch"] for log in posted] == [epoch.epoch], "posted once"
        assert "0x" + bytes(posted[0]["args"]["root"]).hex() == settled.root
    finally:
        for cluster in clusters:
            cluster.stop(timeout=20)
