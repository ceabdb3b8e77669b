"""The coordinator's chain adapter on a real anvil node, including the node going away."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account

from tokenweave.contracts import ANVIL_DEV_KEYS, Anvil, Deployment, RewardTree, anvil_binary
from tokenweave.coordinator._reward_chain import DEPLOYMENT_FILE, open_reward_chain
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError

KEY = "0x" + ANVIL_DEV_KEYS[0].hex()


@pytest.fixture
def anvil() -> Anvil:
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return Anvil()


def test_deploys_once_and_reuses_the_deployment(anvil: Anvil, tmp_path: Path) -> None:
    with anvil:
        first = open_reward_chain(anvil.url, KEY, tmp_path)
        again = open_reward_chain(anvil.url, KEY, tmp_path)
        assert again.info == first.info
        assert Deployment.load(tmp_path / DEPLOYMENT_FILE).distributor == first.info.distributor
        other_key = "0x" + ANVIL_DEV_KEYS[1].hex()
        with pytest.raises(FailedPreconditionError, match="names coordinator"):
            open_reward_chain(anvil.url, other_key, tmp_path)
    with pytest.raises(InvalidArgumentError, match="needs the coordinator's key"):
        open_reward_chain(anvil.url, None, tmp_path)


def test_a_chain_that_goes_away_is_unavailable(anvil: Anvil, tmp_path: Path) -> None:
    with anvil:
        chain = open_reward_chain(anvil.url, KEY, tmp_path)
        address = Account.create().address
        assert chain.claimed(address) == 0
    root = RewardTree({address: 1}).root
    with pytest.raises(UnavailableError, match="is unreachable"):
        chain.post_root(1, root, 1)
    with pytest.raises(UnavailableError, match="is unreachable"):
        chain.balance(address)
    with pytest.raises(FailedPreconditionError, match="does not answer"):
        open_reward_chain(anvil.url, KEY, tmp_path)


def test_relay_refuses_garbage(tmp_path: Path) -> None:
    chain = open_reward_chain("embedded", None, tmp_path)
    with pytest.raises(InvalidArgumentError, match="not a signed transaction"):
        chain.send_raw(b"\x01\x02\x03")


def test_a_bad_chain_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="64 hex digits"):
        open_reward_chain("embedded", "0xnothex", tmp_path)
