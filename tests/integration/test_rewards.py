"""Rewards end to end: real coordinator and nodes, a real chain (embedded, then anvil)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from tokenweave.cli import LocalCluster
from tokenweave.cli._rewards_cmd import wait_settled
from tokenweave.client import Client, EpochInfo
from tokenweave.contracts import (
    ANVIL_DEV_KEYS,
    Anvil,
    Deployment,
    RewardContracts,
    RpcChain,
    anvil_binary,
)

from .conftest import ClusterFactory, sample_documents

TEXT = sample_documents()[0][1][:6000]


def _claim_cli(cluster: LocalCluster, node: int) -> subprocess.CompletedProcess[str]:
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

    claimed = _claim_cli(cluster, 0)
    assert claimed.returncode == 0, claimed.stderr
    payload = json.loads(claimed.stdout)
    node0 = payload["address"].lower()
    assert Decimal(payload["balance"]) == Decimal(first[node0].earned)

    again = _claim_cli(cluster, 0)
    assert again.returncode == 2
    assert "nothing to claim" in again.stderr

    _work_and_settle(client)  # a second epoch
    after = client.rewards(node0)
    assert [e.epoch for e in after.epochs] == [1, 2]
    owed = Decimal(after.epochs[-1].cumulative) - Decimal(payload["balance"])
    assert Decimal(after.claimable) == owed
    second = json.loads(_claim_cli(cluster, 0).stdout)
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


@pytest.fixture
def anvil() -> Iterator[Anvil]:
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with Anvil(block_time=0.5) as node:
        yield node


def test_a_coordinator_killed_mid_settlement_posts_once_and_pays_once(
    cluster_factory: ClusterFactory, anvil: Anvil
) -> None:
    chain_args = (
        "--chain", anvil.url,
        "--chain-key", "0x" + ANVIL_DEV_KEYS[0].hex(),
        "--confirmations", "4",
        "--faucet-wei", str(10**16),
        "--epoch-seconds", "0",
    )  # fmt: skip
    cluster = cluster_factory(nodes=1, coordinator_args=chain_args)
    client = cluster.client()
    client.embed([("doc", TEXT)], window=64, overlap=8).result()
    epoch = client.close_epoch()
    assert epoch is not None
    # Kill -9 while the root is on its way or waiting for confirmations.
    deadline = time.monotonic() + 30
    while client.epochs()[0][0].state == "CLOSED" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cluster.coordinator is not None
    cluster.coordinator.kill()

    cluster.start_coordinator()  # same data dir: same database, same deployment
    client = cluster.client()
    settled = wait_settled(client, epoch.epoch, timeout=60)
    deployment = Deployment.load(cluster.root / "coordinator" / "deployment.json")
    contracts = RewardContracts(RpcChain(anvil.url), deployment)
    posted = contracts.distributor.events.RootPosted().get_logs(from_block=deployment.block_number)
    assert [log["args"]["epoch"] for log in posted] == [epoch.epoch], "the root was posted once"
    assert "0x" + bytes(posted[0]["args"]["root"]).hex() == settled.root

    first = _claim_cli(cluster, 0)
    assert first.returncode == 0, first.stderr
    address = json.loads(first.stdout)["address"]
    assert cluster.coordinator is not None
    cluster.coordinator.kill()
    cluster.start_coordinator()
    second = _claim_cli(cluster, 0)
    assert second.returncode == 2
    assert "nothing to claim" in second.stderr
    assert contracts.balance_of(address) == contracts.claimed(address) > 0


def test_testnet_up_and_down(tmp_path: Path, model_cache: Path) -> None:
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
        assert cli("testnet", "up", "--dir", str(root)).returncode == 2, "one testnet per dir"
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
    finally:
        down = cli("testnet", "down", "--dir", str(root))
    assert down.returncode == 0, down.stderr
    assert not (root / "testnet.json").exists()
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_root_lost_in_a_reorg_is_posted_again(cluster_factory: ClusterFactory) -> None:
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with Anvil() as anvil:  # automine: blocks only come with transactions (or anvil_mine)
        cluster = cluster_factory(
            nodes=1,
            coordinator_args=(
                "--chain", anvil.url,
                "--chain-key", "0x" + ANVIL_DEV_KEYS[0].hex(),
                "--confirmations", "5",
                "--epoch-seconds", "0",
            ),
        )  # fmt: skip
        client = cluster.client()
        client.embed([("doc", TEXT)], window=64, overlap=8).result()
        w3 = RpcChain(anvil.url).w3
        snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        epoch = client.close_epoch()
        assert epoch is not None
        first = _wait_state(client, "POSTED")
        # The chain drops the block with the root: a reorg seen from the coordinator.
        assert w3.provider.make_request("evm_revert", [snapshot])["result"] is True  # type: ignore[arg-type]
        second = _wait_state(client, "POSTED", not_tx=first.tx_hash)
        assert second.tx_hash != first.tx_hash
        w3.provider.make_request("anvil_mine", [10])  # type: ignore[arg-type]
        settled = wait_settled(client, epoch.epoch, timeout=30)
        deployment = Deployment.load(cluster.root / "coordinator" / "deployment.json")
        contracts = RewardContracts(RpcChain(anvil.url), deployment)
        assert contracts.latest_epoch() == epoch.epoch
        assert "0x" + contracts.latest_root().hex() == settled.root
        assert cluster.coordinator is not None
        assert "vanished" in cluster.coordinator.log_path.read_text()
        cluster.stop()


def _wait_state(client: Client, state: str, not_tx: str = "", timeout: float = 30.0) -> EpochInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [epoch] = client.epochs()[0]
        if epoch.state == state and epoch.tx_hash != not_tx:
            return epoch
        time.sleep(0.05)
    raise AssertionError(f"epoch never reached {state} (last: {epoch})")
