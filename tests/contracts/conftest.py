"""Each contract test runs on the embedded chain (py-evm) and on a real anvil node.

The roles are split as in production: `admin` deploys and holds DEFAULT_ADMIN_ROLE, the
`coordinator` fixture is the poster key (a fresh account funded by the admin), the distributor
alone mints. `dev_keys[1]` and `dev_keys[2]` are outsiders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account import Account

from tokenweave.contracts import (
    ANVIL_DEV_KEYS,
    Anvil,
    Chain,
    Deployment,
    EmbeddedChain,
    RewardContracts,
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
