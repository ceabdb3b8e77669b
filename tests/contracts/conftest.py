"""Each contract test runs on the embedded chain (py-evm) and on a real anvil node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

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


@pytest.fixture
def coordinator(chain: Chain) -> Signer:
    return Signer(chain, chain.dev_keys[0])


@pytest.fixture
def deployment(coordinator: Signer) -> Deployment:
    return deploy_rewards(coordinator, coordinator.address)


@pytest.fixture
def rewards(chain: Chain, deployment: Deployment) -> RewardContracts:
    return RewardContracts(chain, deployment)
