"""Settlement under faults: a coordinator killed mid-settlement, a root lost in a reorg (real
coordinator and node processes, anvil).

Split from test_rewards.py so the two modules run on different workers.
"""

from __future__ import annotations

import json
import time

import pytest

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

from .conftest import ClusterFactory
from .test_rewards import TEXT, claim_cli


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

    first = claim_cli(cluster, 0)
    assert first.returncode == 0, first.stderr
    address = json.loads(first.stdout)["address"]
    assert cluster.coordinator is not None
    cluster.coordinator.kill()
    cluster.start_coordinator()
    second = claim_cli(cluster, 0)
    assert second.returncode == 4  # refused
    assert "nothing to claim" in second.stderr
    assert contracts.balance_of(address) == contracts.claimed(address) > 0


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
