"""The coordinator's chain adapter with the roles split: which key is admin and which posts,
the poster key from the environment, and stakes read and slashed through it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from tokenweave.contracts import (
    ANVIL_DEV_KEYS,
    Anvil,
    ContractRevertError,
    Deployment,
    RewardTree,
    Signer,
    anvil_binary,
)
from tokenweave.coordinator._reward_chain import (
    DEPLOYMENT_FILE,
    POSTER_KEY_ENV,
    ContractRewardChain,
    open_reward_chain,
)
from tokenweave.errors import FailedPreconditionError

TOKEN = 10**18
ADMIN, POSTER = ("0x" + k.hex() for k in ANVIL_DEV_KEYS[:2])


@pytest.fixture
def anvil() -> Anvil:
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    return Anvil()


def _staked(chain: ContractRewardChain, amount: int) -> str:
    """A fresh operator that earned `amount` (posted by the coordinator) and staked it all."""
    contracts = chain.contracts
    key = bytes(Account.create().key)
    operator = Signer(contracts.chain, key)
    chain.fund(operator.address, 10**18)
    tree = RewardTree({operator.address: amount})
    chain.post_root(contracts.latest_epoch() + 1, tree.root, amount)
    contracts.claim(operator, operator.address, amount, tree.proof(operator.address))
    chain.staking.stake(operator, amount)
    return operator.address


def test_the_embedded_chain_splits_admin_and_poster(tmp_path: Path) -> None:
    chain = open_reward_chain("embedded", None, tmp_path)
    deployment = chain.contracts.deployment
    assert deployment.admin != deployment.coordinator
    assert deployment.staking
    distributor = chain.contracts.distributor.functions
    poster_role = distributor.COORDINATOR_ROLE().call()
    assert distributor.hasRole(poster_role, deployment.coordinator).call()
    assert not distributor.hasRole(poster_role, deployment.admin).call()


def test_stakes_are_read_and_slashed_through_the_adapter(tmp_path: Path) -> None:
    chain = open_reward_chain("embedded", None, tmp_path, unbonding_delay_s=5)
    assert chain.contracts.staking.functions.unbondingDelay().call() == 5
    operator = _staked(chain, 4 * TOKEN)
    assert chain.stake_of(operator) == 4 * TOKEN
    tx_hash = chain.slash(operator, TOKEN, b'{"shard": "s1", "verdict": "forged"}')
    assert tx_hash.startswith("0x")
    assert chain.confirmations(tx_hash) == 1
    assert chain.stake_of(operator) == 3 * TOKEN
    assert chain.unbonding_of(operator) == 0
    nobody = Account.create().address
    with pytest.raises(ContractRevertError) as info:
        chain.slash(nobody, TOKEN, b"evidence")
    assert (info.value.error, info.value.arguments) == ("Staking__NothingToSlash", (nobody,))


def test_an_rpc_chain_takes_its_poster_key_from_the_environment(
    anvil: Anvil, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(POSTER_KEY_ENV, POSTER)
    with anvil:
        chain = open_reward_chain(anvil.url, ADMIN, tmp_path, max_mint_per_epoch_wei=9 * TOKEN)
        assert chain.contracts.max_mint_per_epoch() == 9 * TOKEN
        recorded = Deployment.load(tmp_path / DEPLOYMENT_FILE)
        assert recorded.admin == Account.from_key(ADMIN).address
        assert recorded.coordinator == Account.from_key(POSTER).address
        assert recorded.staking == chain.contracts.deployment.staking
        assert chain.contracts.staking.functions.unbondingDelay().call() == 60  # a dev chain
        operator = _staked(chain, TOKEN)
        assert open_reward_chain(anvil.url, ADMIN, tmp_path).stake_of(operator) == TOKEN
        monkeypatch.delenv(POSTER_KEY_ENV)
        with pytest.raises(FailedPreconditionError, match="names coordinator"):
            open_reward_chain(anvil.url, ADMIN, tmp_path)


def test_a_deployment_recorded_before_staking_is_refused(anvil: Anvil, tmp_path: Path) -> None:
    with anvil:
        open_reward_chain(anvil.url, ADMIN, tmp_path)
        record = json.loads((tmp_path / DEPLOYMENT_FILE).read_text())
        del record["staking"], record["admin"]
        (tmp_path / DEPLOYMENT_FILE).write_text(json.dumps(record))
        with pytest.raises(FailedPreconditionError, match="predates NodeStaking"):
            open_reward_chain(anvil.url, ADMIN, tmp_path)
