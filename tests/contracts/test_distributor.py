"""RewardDistributor and RewardToken through the Python bindings, on every chain of conftest.

A claim that would pay nothing more reverts with `Reward__NothingToClaim` (it does not pay 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3.logs import DISCARD

from tokenweave.contracts import (
    Chain,
    ContractRevertError,
    Deployment,
    RewardContracts,
    RewardTree,
    Signer,
)
from tokenweave.errors import FailedPreconditionError

TOKEN = 10**18


def _operators(n: int) -> list[str]:
    return [Account.create().address for _ in range(n)]


def _send_directly(rewards: RewardContracts, signer: Signer, function: Any) -> dict[str, Any]:
    """Send a contract call as is, past the binding's own checks, so the contract decides."""
    tx = dict(function.build_transaction({"from": signer.address, "gas": 1}))
    for key in ("gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"):
        tx.pop(key, None)
    return signer.send(tx, rewards.errors)


def test_amounts_after_several_epochs(rewards: RewardContracts, coordinator: Signer) -> None:
    a, b = _operators(2)
    earned = [{a: 3 * TOKEN, b: TOKEN}, {a: 2 * TOKEN}, {a: TOKEN, b: 5 * TOKEN}]
    cumulative = {a: 0, b: 0}
    for epoch, amounts in enumerate(earned, start=1):
        for address, amount in amounts.items():
            cumulative[address] += amount
        tree = RewardTree(cumulative)
        rewards.post_root(coordinator, epoch, tree.root, sum(amounts.values()))
        if epoch == 2:  # a claims midway, b only at the end
            rewards.claim(coordinator, a, cumulative[a], tree.proof(a))
    rewards.claim(coordinator, a, cumulative[a], tree.proof(a))
    rewards.claim(coordinator, b, cumulative[b], tree.proof(b))
    assert rewards.balance_of(a) == rewards.claimed(a) == 6 * TOKEN
    assert rewards.balance_of(b) == rewards.claimed(b) == 6 * TOKEN
    assert rewards.latest_epoch() == 3
    assert rewards.latest_root() == tree.root


def test_a_second_claim_pays_nothing_more(rewards: RewardContracts, coordinator: Signer) -> None:
    [a] = _operators(1)
    tree = RewardTree({a: TOKEN})
    rewards.post_root(coordinator, 1, tree.root, TOKEN)
    rewards.claim(coordinator, a, TOKEN, tree.proof(a))
    with pytest.raises(ContractRevertError) as info:
        rewards.claim(coordinator, a, TOKEN, tree.proof(a))
    assert info.value.error == "Reward__NothingToClaim"
    assert info.value.arguments == (a, TOKEN, TOKEN)
    assert rewards.balance_of(a) == TOKEN


def test_forged_and_borrowed_proofs_revert(rewards: RewardContracts, coordinator: Signer) -> None:
    a, b = _operators(2)
    tree = RewardTree({a: TOKEN, b: 2 * TOKEN})
    rewards.post_root(coordinator, 1, tree.root, 3 * TOKEN)
    for account, amount, proof in [
        (a, 10 * TOKEN, tree.proof(a)),  # more than the leaf says
        (a, TOKEN, tree.proof(b)),  # another operator's proof
        (b, 2 * TOKEN, [bytes(32)]),  # made up
    ]:
        with pytest.raises(ContractRevertError) as info:
            rewards.claim(coordinator, account, amount, proof)
        assert info.value.error == "Reward__InvalidProof"
    assert rewards.balance_of(a) == rewards.balance_of(b) == 0


def test_only_the_coordinator_posts_and_epochs_increase(
    rewards: RewardContracts, coordinator: Signer, chain: Chain
) -> None:
    tree = RewardTree({_operators(1)[0]: TOKEN})
    outsider = Signer(chain, chain.dev_keys[1])
    with pytest.raises(ContractRevertError) as info:
        rewards.post_root(outsider, 1, tree.root, TOKEN)
    assert info.value.error == "AccessControlUnauthorizedAccount"
    role = rewards.distributor.functions.COORDINATOR_ROLE().call()
    assert info.value.arguments == (outsider.address, role)
    rewards.post_root(coordinator, 2, tree.root, TOKEN)
    with pytest.raises(ContractRevertError, match="not after 2"):
        rewards.post_root(coordinator, 1, tree.root, TOKEN)
    other = RewardTree({_operators(1)[0]: TOKEN})
    with pytest.raises(ContractRevertError, match="was posted with root"):
        rewards.post_root(coordinator, 2, other.root, TOKEN)


def test_posting_the_same_epoch_again_sends_nothing(
    rewards: RewardContracts, coordinator: Signer, chain: Chain
) -> None:
    tree = RewardTree({_operators(1)[0]: TOKEN})
    first = rewards.post_root(coordinator, 1, tree.root, TOKEN)
    nonce = chain.w3.eth.get_transaction_count(coordinator.account.address)
    assert rewards.post_root(coordinator, 1, tree.root, TOKEN) == first
    assert chain.w3.eth.get_transaction_count(coordinator.account.address) == nonce
    assert rewards.confirmations(first[0]) == 1
    assert rewards.confirmations("0x" + "ab" * 32) is None


def test_events_carry_the_right_arguments(
    rewards: RewardContracts, coordinator: Signer, deployment: Deployment
) -> None:
    [a] = _operators(1)
    tree = RewardTree({a: 7 * TOKEN})
    rewards.post_root(coordinator, 4, tree.root, 7 * TOKEN)
    [posted] = rewards.distributor.events.RootPosted().get_logs(from_block=deployment.block_number)
    args = posted["args"]
    assert (args["epoch"], bytes(args["root"]), args["amount"]) == (4, tree.root, 7 * TOKEN)
    receipt = rewards.claim(coordinator, a, 7 * TOKEN, tree.proof(a))
    [claimed] = rewards.distributor.events.Claimed().process_receipt(receipt, errors=DISCARD)
    assert claimed["args"]["account"] == a
    assert claimed["args"]["amount"] == claimed["args"]["cumulativeAmount"] == 7 * TOKEN


def test_the_contract_itself_refuses_old_epochs_and_empty_roots(
    rewards: RewardContracts, coordinator: Signer
) -> None:
    root = RewardTree({_operators(1)[0]: TOKEN}).root
    rewards.post_root(coordinator, 5, root, TOKEN)
    post = rewards.distributor.functions.postRoot
    for epoch in (5, 4):
        with pytest.raises(ContractRevertError) as info:
            _send_directly(rewards, coordinator, post(epoch, root, 0))
        assert (info.value.error, info.value.arguments) == (
            "Reward__EpochNotIncreasing",
            (epoch, 5),
        )
    with pytest.raises(ContractRevertError) as info:
        _send_directly(rewards, coordinator, post(6, bytes(32), 0))
    assert info.value.error == "Reward__EmptyRoot"
    assert rewards.latest_epoch() == 5


def test_the_binding_refuses_an_old_epoch_without_sending(
    rewards: RewardContracts, coordinator: Signer, chain: Chain
) -> None:
    root = RewardTree({_operators(1)[0]: TOKEN}).root
    rewards.post_root(coordinator, 3, root, TOKEN)
    nonce = chain.w3.eth.get_transaction_count(coordinator.account.address)
    with pytest.raises(ContractRevertError) as info:
        rewards.post_root(coordinator, 2, root, TOKEN)
    assert (info.value.error, info.value.arguments) == ("Reward__EpochNotIncreasing", (2, 3))
    assert chain.w3.eth.get_transaction_count(coordinator.account.address) == nonce


def test_nothing_can_be_claimed_before_a_root(
    rewards: RewardContracts, coordinator: Signer
) -> None:
    [a] = _operators(1)
    tree = RewardTree({a: TOKEN})
    with pytest.raises(ContractRevertError) as info:
        rewards.claim(coordinator, a, TOKEN, tree.proof(a))
    assert info.value.error == "Reward__NoRoot"


def test_anyone_may_claim_for_an_operator_who_alone_is_paid(
    rewards: RewardContracts, coordinator: Signer, chain: Chain, deployment: Deployment
) -> None:
    [a] = _operators(1)
    relayer = Signer(chain, chain.dev_keys[2])
    rewards.post_root(coordinator, 1, RewardTree({a: 2 * TOKEN}).root, 2 * TOKEN)
    rewards.claim(relayer, a, 2 * TOKEN, RewardTree({a: 2 * TOKEN}).proof(a))
    tree = RewardTree({a: 5 * TOKEN})
    rewards.post_root(coordinator, 2, tree.root, 3 * TOKEN)
    receipt = rewards.claim(relayer, a, 5 * TOKEN, tree.proof(a))
    [claimed] = rewards.distributor.events.Claimed().process_receipt(receipt, errors=DISCARD)
    assert dict(claimed["args"]) == {
        "account": a,
        "amount": 3 * TOKEN,
        "cumulativeAmount": 5 * TOKEN,
    }
    [minted] = rewards.token.events.Transfer().process_receipt(receipt, errors=DISCARD)
    assert (minted["args"]["to"], minted["args"]["value"]) == (a, 3 * TOKEN)
    assert rewards.balance_of(a) == 5 * TOKEN
    assert rewards.balance_of(relayer.address) == 0


def test_only_the_distributor_mints(rewards: RewardContracts, chain: Chain) -> None:
    outsider = Signer(chain, chain.dev_keys[1])
    minter = rewards.token.functions.MINTER_ROLE().call()
    with pytest.raises(ContractRevertError) as info:
        _send_directly(rewards, outsider, rewards.token.functions.mint(outsider.address, TOKEN))
    assert info.value.error == "AccessControlUnauthorizedAccount"
    assert info.value.arguments == (outsider.address, minter)
    assert rewards.token.functions.hasRole(minter, rewards.deployment.distributor).call()


def test_a_deployment_round_trips_and_belongs_to_its_chain(
    deployment: Deployment, chain: Chain, tmp_path: Path
) -> None:
    deployment.save(tmp_path / "deployment.json")
    assert Deployment.load(tmp_path / "deployment.json") == deployment
    assert deployment.chain_id == chain.chain_id
    elsewhere = Deployment(**{**deployment.__dict__, "chain_id": chain.chain_id + 1})
    with pytest.raises(FailedPreconditionError, match="is chain"):
        RewardContracts(chain, elsewhere)
