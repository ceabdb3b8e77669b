"""Roles and mint caps: the admin neither posts nor mints, the poster can neither mint nor grant
roles, a root may announce at most `maxMintPerEpoch`, claims never exceed what roots announced,
and the token never exceeds its supply cap — so a stolen poster key mints at most the cap per
root."""

from __future__ import annotations

import pytest

from tests.contracts.conftest import advance, earn, funded, send_directly
from tokenweave.contracts import (
    Chain,
    ContractRevertError,
    NetworkTerms,
    RewardContracts,
    RewardTree,
    Signer,
    deploy_rewards,
)

TOKEN = 10**18


def _deploy(admin: Signer, poster: Signer, **terms: int) -> RewardContracts:
    deployment = deploy_rewards(admin, poster.address, NetworkTerms(**terms))  # type: ignore[arg-type]
    return RewardContracts(admin.chain, deployment)


def _unauthorized(info: pytest.ExceptionInfo[ContractRevertError]) -> tuple[object, ...]:
    assert info.value.error == "AccessControlUnauthorizedAccount"
    return info.value.arguments


def test_the_roles_are_held_by_separate_keys(
    rewards: RewardContracts, admin: Signer, coordinator: Signer
) -> None:
    token, distributor = rewards.token.functions, rewards.distributor.functions
    staking = rewards.staking.functions
    admin_role = token.DEFAULT_ADMIN_ROLE().call()
    minter, poster = token.MINTER_ROLE().call(), distributor.COORDINATOR_ROLE().call()
    slasher = staking.SLASHER_ROLE().call()
    assert token.hasRole(minter, rewards.deployment.distributor).call()
    for contract, role in ((token, admin_role), (distributor, admin_role), (staking, admin_role)):
        assert contract.hasRole(role, admin.address).call()
        assert not contract.hasRole(role, coordinator.address).call()
    assert distributor.hasRole(poster, coordinator.address).call()
    assert staking.hasRole(slasher, coordinator.address).call()
    assert not distributor.hasRole(poster, admin.address).call()
    assert not token.hasRole(minter, admin.address).call()
    assert not token.hasRole(minter, coordinator.address).call()
    assert rewards.deployment.admin == admin.address


def test_neither_key_mints_directly(
    rewards: RewardContracts, admin: Signer, coordinator: Signer
) -> None:
    minter = rewards.token.functions.MINTER_ROLE().call()
    for signer in (admin, coordinator):
        mint = rewards.token.functions.mint(signer.address, TOKEN)
        with pytest.raises(ContractRevertError) as info:
            send_directly(rewards, signer, mint)
        assert _unauthorized(info) == (signer.address, minter)
    assert rewards.token.functions.totalSupply().call() == 0


def test_the_poster_cannot_grant_roles(rewards: RewardContracts, coordinator: Signer) -> None:
    admin_role = rewards.token.functions.DEFAULT_ADMIN_ROLE().call()
    grants = [
        rewards.token.functions.grantRole(
            rewards.token.functions.MINTER_ROLE().call(), coordinator.address
        ),
        rewards.distributor.functions.grantRole(admin_role, coordinator.address),
        rewards.staking.functions.grantRole(admin_role, coordinator.address),
    ]
    for grant in grants:
        with pytest.raises(ContractRevertError) as info:
            send_directly(rewards, coordinator, grant)
        assert _unauthorized(info) == (coordinator.address, admin_role)
    with pytest.raises(ContractRevertError) as info:
        send_directly(rewards, coordinator, rewards.distributor.functions.setMaxMintPerEpoch(1))
    assert _unauthorized(info) == (coordinator.address, admin_role)


def test_the_admin_cannot_post(rewards: RewardContracts, admin: Signer) -> None:
    tree = RewardTree({admin.address: TOKEN})
    with pytest.raises(ContractRevertError) as info:
        rewards.post_root(admin, 1, tree.root, TOKEN)
    role = rewards.distributor.functions.COORDINATOR_ROLE().call()
    assert _unauthorized(info) == (admin.address, role)


def test_a_root_announcing_more_than_the_epoch_cap_is_refused(
    admin: Signer, coordinator: Signer
) -> None:
    rewards = _deploy(admin, coordinator, max_mint_per_epoch=5 * TOKEN)
    tree = RewardTree({coordinator.address: 6 * TOKEN})
    with pytest.raises(ContractRevertError) as info:
        rewards.post_root(coordinator, 1, tree.root, 6 * TOKEN)
    assert (info.value.error, info.value.arguments) == (
        "Reward__MintCapExceeded",
        (6 * TOKEN, 5 * TOKEN),
    )
    assert rewards.latest_epoch() == 0
    receipt = send_directly(
        rewards, admin, rewards.distributor.functions.setMaxMintPerEpoch(TOKEN * 6)
    )
    [changed] = rewards.distributor.events.MaxMintPerEpochChanged().process_receipt(receipt)
    assert dict(changed["args"]) == {"previous": 5 * TOKEN, "cap": 6 * TOKEN}
    rewards.post_root(coordinator, 1, tree.root, 6 * TOKEN)
    assert rewards.unclaimed_allowance() == 6 * TOKEN


def test_a_stolen_poster_key_mints_at_most_what_roots_announced(
    admin: Signer, coordinator: Signer
) -> None:
    """The thief's leaf says 100; its root may announce at most the cap, and claims stop there."""
    rewards = _deploy(admin, coordinator, max_mint_per_epoch=5 * TOKEN)
    thief = coordinator.address
    tree = RewardTree({thief: 100 * TOKEN})
    rewards.post_root(coordinator, 1, tree.root, 5 * TOKEN)
    with pytest.raises(ContractRevertError) as info:
        rewards.claim(coordinator, thief, 100 * TOKEN, tree.proof(thief))
    assert (info.value.error, info.value.arguments) == (
        "Reward__AllowanceExceeded",
        (100 * TOKEN, 5 * TOKEN),
    )
    partial = RewardTree({thief: 5 * TOKEN})
    rewards.post_root(coordinator, 2, partial.root, 0)
    rewards.claim(coordinator, thief, 5 * TOKEN, partial.proof(thief))
    assert rewards.unclaimed_allowance() == 0
    assert rewards.balance_of(thief) == 5 * TOKEN


def test_honest_claims_draw_the_allowance_down_exactly(
    rewards: RewardContracts, coordinator: Signer, admin: Signer
) -> None:
    a, b = funded(admin, 0).address, funded(admin, 0).address
    earn(rewards, coordinator, {a: 3 * TOKEN, b: 4 * TOKEN})
    assert rewards.unclaimed_allowance() == 0
    assert rewards.token.functions.totalSupply().call() == 7 * TOKEN


def test_the_supply_cap_holds_whatever_the_roots_say(admin: Signer, coordinator: Signer) -> None:
    rewards = _deploy(admin, coordinator, supply_cap=10 * TOKEN, max_mint_per_epoch=100 * TOKEN)
    a = funded(admin, 0).address
    earn(rewards, coordinator, {a: 8 * TOKEN})
    tree = RewardTree({a: 11 * TOKEN})
    rewards.post_root(coordinator, 2, tree.root, 3 * TOKEN)
    with pytest.raises(ContractRevertError) as info:
        rewards.claim(coordinator, a, 11 * TOKEN, tree.proof(a))
    assert (info.value.error, info.value.arguments) == (
        "ERC20ExceededCap",
        (11 * TOKEN, 10 * TOKEN),
    )
    assert rewards.token.functions.cap().call() == 10 * TOKEN


def test_roots_come_no_faster_than_the_minimum_interval(
    admin: Signer, coordinator: Signer, chain: Chain
) -> None:
    rewards = _deploy(admin, coordinator, min_post_interval_s=3600)
    tree = RewardTree({coordinator.address: TOKEN})
    rewards.post_root(coordinator, 1, tree.root, TOKEN)
    with pytest.raises(ContractRevertError) as info:
        rewards.post_root(coordinator, 2, tree.root, 0)
    assert info.value.error == "Reward__PostedTooSoon"
    advance(chain, 3600)
    rewards.post_root(coordinator, 2, tree.root, 0)
    assert rewards.latest_epoch() == 2
