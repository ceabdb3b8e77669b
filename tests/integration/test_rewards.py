"""Rewards end to end: real coordinator and nodes, a real chain (embedded, then anvil)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from tokenweave.cli import LocalCluster
from tokenweave.cli._rewards_cmd import wait_settled
from tokenweave.client import Client
from tokenweave.contracts import (
    anvil_binary,
)
from tokenweave.models import PreparedGenerator

from .conftest import ClusterFactory, sample_documents

TEXT = sample_documents()[0][1][:6000]


def claim_cli(cluster: LocalCluster, node: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenweave.cli",
            "node",
            "claim",
            "--data-dir",
            str(cluster.root / f"node{node}"),
            "--coordinator",
            cluster.address,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **cluster.client_env()},
        check=False,
    )


def _work_and_settle(client: Client) -> int:
    job = client.embed([("doc", TEXT)], window=64, overlap=8).result().job
    epoch = client.close_epoch()
    assert epoch is not None
    wait_settled(client, epoch.epoch)
    return job.tokens_processed


def test_rewards_follow_the_work_across_epochs(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory(
        nodes=2,
        coordinator_args=(
            "--epoch-seconds",
            "0",
            "--windows-per-shard",
            "2",
            "--prices",
            "all-minilm-l6-v2=2.5",
        ),
    )
    client = cluster.client()
    assert client.close_epoch() is None, "nothing earned yet: no epoch"
    tokens = _work_and_settle(client)
    nodes = [n.address for n in client.nodes()]
    first = {a: client.rewards(a) for a in nodes}
    assert sum(r.tokens for r in first.values()) == tokens
    for r in first.values():
        assert Decimal(r.earned) == Decimal(r.tokens) * Decimal("2.5") / 1000
        assert r.claimable == r.earned
        assert r.claimed == r.balance == "0"

    claimed = claim_cli(cluster, 0)
    assert claimed.returncode == 0, claimed.stderr
    payload = json.loads(claimed.stdout)
    node0 = payload["address"].lower()
    assert Decimal(payload["balance"]) == Decimal(first[node0].earned)

    again = claim_cli(cluster, 0)
    assert again.returncode == 4  # refused
    assert "nothing to claim" in again.stderr

    _work_and_settle(client)  # a second epoch
    after = client.rewards(node0)
    assert [e.epoch for e in after.epochs] == [1, 2]
    owed = Decimal(after.epochs[-1].cumulative) - Decimal(payload["balance"])
    assert Decimal(after.claimable) == owed
    second = json.loads(claim_cli(cluster, 0).stdout)
    assert Decimal(second["amount_wei"]) / 10**18 == owed
    assert Decimal(second["balance"]) == Decimal(after.epochs[-1].cumulative)

    rewards = subprocess.run(
        [
            sys.executable,
            "-m",
            "tokenweave.cli",
            "rewards",
            node0,
            "--coordinator",
            cluster.address,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **cluster.client_env()},
        check=False,
    )
    assert rewards.returncode == 0, rewards.stderr
    assert "earnings per epoch" in rewards.stdout


def test_bad_addresses_are_refused(cluster_factory: ClusterFactory) -> None:
    cluster = cluster_factory()
    cluster.start_coordinator()
    client = cluster.client()
    with pytest.raises(Exception, match="not an Ethereum address"):
        client.rewards("0x123")
    with pytest.raises(Exception, match="no epoch has been posted"):
        client.claim(bytes(range(1, 33)))


def test_testnet_up_and_down(
    tmp_path: Path, model_cache: Path, generator: PreparedGenerator
) -> None:
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    root = tmp_path / "testnet"
    env = {**os.environ, "TOKENWEAVE_MODEL_CACHE": str(model_cache)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tokenweave.cli", *args],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            check=False,
        )

    up = cli("testnet", "up", "--dir", str(root), "--nodes", "1", "--block-time", "0.5")
    pids: dict[str, int] = {}
    try:
        assert up.returncode == 0, up.stderr
        state = json.loads((root / "testnet.json").read_text())
        pids = state["pids"]
        assert set(pids) == {"anvil", "coordinator", "node0"}
        assert cli("testnet", "up", "--dir", str(root)).returncode == 4, "one testnet per dir"
        with Client(
            state["coordinator"],
            api_key=Path(state["api_key_file"]).read_text().strip(),
            tls_ca=state["tls_ca"],
        ) as client:
            _work_and_settle(client)
        claimed = cli(
            "node", "claim", "--data-dir", state["node_data_dirs"][0],
            "--coordinator", state["coordinator"], "--tls-ca", state["tls_ca"], "--json",
        )  # fmt: skip
        assert claimed.returncode == 0, claimed.stderr
        assert Decimal(json.loads(claimed.stdout)["balance"]) > 0
        assert state["openai_base_url"].startswith("https://127.0.0.1:")
    finally:
        down = cli("testnet", "down", "--dir", str(root))
    assert down.returncode == 0, down.stderr
    assert not (root / "testnet.json").exists()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
