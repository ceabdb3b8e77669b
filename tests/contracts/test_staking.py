"""NodeStaking through the Python bindings, on every chain of conftest: stake, unbond, withdraw,
slash (active stake first, then what is unbonding), and who may slash."""

from __future__ import annotations

import pytest
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from tests.contracts.conftest import advance, earn, funded, send_directly
from tokenweave.contracts import (
    Chain,
    ContractRevertError,
    Deployment,
    NetworkTerms,
    RewardContracts,
    Signer,
    StakingContract,
    deploy_rewards,
    staking_address,
)
from tokenweave.contracts._staking import staking_calls

TOKEN = 10**18
DELAY = 3600


@pytest.fixture
def deployment(admin: Signer, coordinator: Signer) -> Deployment:
    return deploy_rewards(admin, coordinator.address, NetworkTerms(unbonding_delay_s=DELAY))


@pytest.fixture
def staking(rewards: RewardContracts) -> StakingContract:
    return StakingContract(rewards)


@pytest.fixture
def operator(admin: Signer, rewards: RewardContracts, coordinator: Signer) -> Signer:
    """An operator who earned (and claimed) 10 TWV."""
    signer = funded(admin)
    earn(rewards, coordinator, {signer.address: 10 * TOKEN})
    return signer


def test_the_staking_address_follows_from_the_distributors(
    deployment: Deployment, staking: StakingContract
) -> None:
    assert staking_address(deployment.distributor) == deployment.staking == staking.address
    assert staking.staking.functions.token().call() == deployment.token
    assert staking.staking.functions.unbondingDelay().call() == DELAY


def test_stake_unbond_and_withdraw_after_the_delay(
    staking: StakingContract, rewards: RewardContracts, operator: Signer, chain: Chain
) -> None:
    address = operator.address
    receipt = staking.stake(operator, 6 * TOKEN)
    [staked] = staking.staking.events.Staked().process_receipt(receipt, errors=DISCARD)
    assert dict(staked["args"]) == {"operator": address, "amount": 6 * TOKEN, "stake": 6 * TOKEN}
    assert staking.stake_of(address) == staking.total_staked() == 6 * TOKEN
    assert rewards.balance_of(address) == 4 * TOKEN

    receipt = staking.request_unstake(operator, 2 * TOKEN)
    [asked] = staking.staking.events.UnstakeRequested().process_receipt(receipt, errors=DISCARD)
    unbonding = staking.unbonding_of(address)
    assert (unbonding.amount, asked["args"]["releaseAt"]) == (2 * TOKEN, unbonding.release_at)
    assert staking.stake_of(address) == staking.total_staked() == 4 * TOKEN

    with pytest.raises(ContractRevertError) as info:
        staking.withdraw(operator)
    assert info.value.error == "Staking__StillUnbonding"
    assert info.value.arguments[0] == unbonding.release_at

    advance(chain, DELAY)
    receipt = staking.withdraw(operator)
    [withdrawn] = staking.staking.events.Withdrawn().process_receipt(receipt, errors=DISCARD)
    assert dict(withdrawn["args"]) == {"operator": address, "amount": 2 * TOKEN}
    assert rewards.balance_of(address) == 6 * TOKEN
    assert staking.unbonding_of(address).amount == 0
    with pytest.raises(ContractRevertError) as info:
        staking.withdraw(operator)
    assert (info.value.error, info.value.arguments) == ("Staking__NothingUnbonding", (address,))


def test_a_new_request_restarts_the_delay(
    staking: StakingContract, operator: Signer, chain: Chain
) -> None:
    staking.stake(operator, 4 * TOKEN)
    staking.request_unstake(operator, TOKEN)
    advance(chain, DELAY - 60)
    staking.request_unstake(operator, TOKEN)
    advance(chain, 120)
    with pytest.raises(ContractRevertError, match="Staking__StillUnbonding"):
        staking.withdraw(operator)
    assert staking.unbonding_of(operator.address).amount == 2 * TOKEN


def test_bad_amounts_are_refused(staking: StakingContract, operator: Signer) -> None:
    staking.stake(operator, 3 * TOKEN)
    with pytest.raises(ContractRevertError) as info:
        staking.request_unstake(operator, 4 * TOKEN)
    assert (info.value.error, info.value.arguments) == (
        "Staking__InsufficientStake",
        (4 * TOKEN, 3 * TOKEN),
    )
    for call in (lambda: staking.stake(operator, 0), lambda: staking.request_unstake(operator, 0)):
        with pytest.raises(ContractRevertError) as info:
            call()
        assert info.value.error == "Staking__ZeroAmount"
    with pytest.raises(ContractRevertError) as info:
        staking.stake(operator, 100 * TOKEN)  # more than it holds
    assert info.value.error == "ERC20InsufficientBalance"


def test_slash_takes_active_then_unbonding_stake_and_burns_it(
    staking: StakingContract,
    rewards: RewardContracts,
    operator: Signer,
    coordinator: Signer,
    chain: Chain,
) -> None:
    address = operator.address
    staking.stake(operator, 6 * TOKEN)
    staking.request_unstake(operator, 4 * TOKEN)  # 2 active, 4 unbonding
    supply = rewards.token.functions.totalSupply().call()
    receipt = staking.slash(coordinator, address, 3 * TOKEN, b"shard s1: forged output")
    [slashed] = staking.staking.events.Slashed().process_receipt(receipt, errors=DISCARD)
    assert dict(slashed["args"]) == {
        "operator": address,
        "evidence": keccak(b"shard s1: forged output"),
        "amount": 3 * TOKEN,
        "fromUnbonding": TOKEN,
    }
    assert staking.stake_of(address) == staking.total_staked() == 0
    assert staking.unbonding_of(address).amount == 3 * TOKEN
    assert rewards.token.functions.totalSupply().call() == supply - 3 * TOKEN

    advance(chain, DELAY)  # past the delay but not withdrawn: still slashable
    receipt = staking.slash(coordinator, address, 10 * TOKEN, b"shard s2")
    [slashed] = staking.staking.events.Slashed().process_receipt(receipt, errors=DISCARD)
    assert (slashed["args"]["amount"], slashed["args"]["fromUnbonding"]) == (3 * TOKEN, 3 * TOKEN)
    with pytest.raises(ContractRevertError) as info:
        staking.slash(coordinator, address, TOKEN, b"shard s3")
    assert (info.value.error, info.value.arguments) == ("Staking__NothingToSlash", (address,))
    with pytest.raises(ContractRevertError, match="Staking__NothingUnbonding"):
        staking.withdraw(operator)
    assert rewards.balance_of(address) == 4 * TOKEN


def test_only_the_poster_slashes_and_only_with_evidence(
    staking: StakingContract, operator: Signer, admin: Signer, chain: Chain, coordinator: Signer
) -> None:
    staking.stake(operator, 5 * TOKEN)
    slasher = staking.staking.functions.SLASHER_ROLE().call()
    for forger in (Signer(chain, chain.dev_keys[1]), admin, operator):
        with pytest.raises(ContractRevertError) as info:
            staking.slash(forger, operator.address, 5 * TOKEN, b"made up")
        assert (info.value.error, info.value.arguments) == (
            "AccessControlUnauthorizedAccount",
            (forger.address, slasher),
        )
    slash = staking.staking.functions.slash(operator.address, TOKEN, bytes(32))
    with pytest.raises(ContractRevertError) as info:
        send_directly(staking.contracts, coordinator, slash)
    assert info.value.error == "Staking__NoEvidence"
    assert staking.stake_of(operator.address) == 5 * TOKEN


def test_a_treasury_receives_slashed_stake(
    admin: Signer, coordinator: Signer, chain: Chain
) -> None:
    treasury = funded(admin, 0).address
    terms = NetworkTerms(unbonding_delay_s=DELAY, treasury=treasury)
    rewards = RewardContracts(chain, deploy_rewards(admin, coordinator.address, terms))
    staking = StakingContract(rewards)
    operator = funded(admin)
    earn(rewards, coordinator, {operator.address: 2 * TOKEN})
    staking.stake(operator, 2 * TOKEN)
    staking.slash(coordinator, operator.address, TOKEN, b"evidence")
    assert rewards.balance_of(treasury) == TOKEN
    assert staking.stake_of(operator.address) == TOKEN


def test_calls_signed_elsewhere_stake_and_unstake(
    staking: StakingContract, rewards: RewardContracts, operator: Signer, deployment: Deployment
) -> None:
    """What the CLI signs and the coordinator relays: raw transactions from the operator's key."""
    w3 = rewards.chain.w3

    def run(action: str, amount: int = 0) -> None:
        for call in staking_calls(action, deployment.token, deployment.distributor, amount):
            tx = {
                "to": call.to,
                "data": call.data,
                "value": 0,
                "gas": call.gas,
                "gasPrice": w3.eth.gas_price,
                "nonce": w3.eth.get_transaction_count(operator.address, "pending"),
                "chainId": rewards.chain.chain_id,
            }
            raw = operator.account.sign_transaction(tx).raw_transaction
            receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))
            assert receipt["status"] == 1

    run("stake", 7 * TOKEN)
    assert staking.stake_of(operator.address) == 7 * TOKEN
    run("unstake", 3 * TOKEN)
    assert staking.unbonding_of(operator.address).amount == 3 * TOKEN
