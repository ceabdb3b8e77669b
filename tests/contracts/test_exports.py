"""The public names of tokenweave.contracts are deliberate: changing them is an API change."""

import tokenweave.contracts

EXPORTS = [
    "ANVIL_DEV_KEYS",
    "EMBEDDED",
    "Anvil",
    "Artifact",
    "Chain",
    "ContractRevertError",
    "Deployment",
    "EmbeddedChain",
    "NetworkTerms",
    "RewardContracts",
    "RewardTree",
    "RpcChain",
    "Signer",
    "StakingContract",
    "anvil_binary",
    "deploy_rewards",
    "leaf_hash",
    "load_artifact",
    "revert_from",
    "stale_sources",
    "staking_address",
]


def test_exports() -> None:
    assert sorted(tokenweave.contracts.__all__) == sorted(EXPORTS)
    for name in EXPORTS:
        assert hasattr(tokenweave.contracts, name), name
