"""Each contract test runs on the embedded chain (py-evm) and on a real anvil node.

The roles are split as in production: `admin` deploys and holds DEFAULT_ADMIN_ROLE, the
`coordinator` fixture is the poster key (a fresh account funded by the admin), the distributor
alone mints. `dev_keys[1]` and `dev_keys[2]` are outsiders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account

from tokenweave.contracts import (
    ANVIL_DEV_KEYS,
    EMBEDDED,
    Anvil,
    Chain,
    Deployment,
    EmbeddedChain,
    RewardContracts,
    RewardTree,
    RpcChain,
    Signer,
    anvil_binary,
    deploy_rewards,
)


@pytest.fixture(scope="session")
def anvil() -> Iterator[Anvil]:
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with Anvil() as node:
        yield node


@pytest.fixture(params=["embedded", "anvil"])
def chain(request: pytest.FixtureRequest) -> Chain:
    if request.param == "embedded":
        return EmbeddedChain()
    node: Anvil = request.getfixturevalue("anvil")
    return RpcChain(node.url, ANVIL_DEV_KEYS)


def funded(admin: Signer, ether: int = 10) -> Signer:
    """A fresh key with `ether` ether from `admin`."""
    key = Account.create().key
    admin.send({"to": Account.from_key(key).address, "value": ether * 10**18})
    return Signer(admin.chain, bytes(key))


@pytest.fixture
def admin(chain: Chain) -> Signer:
    return Signer(chain, chain.dev_keys[0])


@pytest.fixture
def coordinator(admin: Signer) -> Signer:
    """The poster key."""
    return funded(admin)


@pytest.fixture
def deployment(admin: Signer, coordinator: Signer) -> Deployment:
    return deploy_rewards(admin, coordinator.address)


@pytest.fixture
def rewards(chain: Chain, deployment: Deployment) -> RewardContracts:
    return RewardContracts(chain, deployment)


def advance(chain: Chain, seconds: int) -> None:
    """Move the chain's clock `seconds` ahead (the next block is stamped after it)."""
    if chain.endpoint == EMBEDDED:
        tester = chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]
        tester.time_travel(int(tester.get_block_by_number("pending")["timestamp"]) + seconds)
        tester.mine_blocks()
    else:
        chain.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def send_directly(rewards: RewardContracts, signer: Signer, function: Any) -> dict[str, Any]:
    """Send a contract call as is, past the binding's own checks, so the contract decides."""
    tx = dict(function.build_transaction({"from": signer.address, "gas": 1}))
    for key in ("gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"):
        tx.pop(key, None)
    return signer.send(tx, rewards.errors)


def earn(
    rewards: RewardContracts, poster: Signer, amounts: dict[str, int], epoch: int = 1
) -> RewardTree:
    """Post one root paying `amounts` (first root: the whole sum is new) and claim every leaf."""
    tree = RewardTree(amounts)
    rewards.post_root(poster, epoch, tree.root, sum(amounts.values()))
    for address, amount in amounts.items():
        rewards.claim(poster, address, amount, tree.proof(address))
    return tree
