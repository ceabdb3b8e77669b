"""The reward contracts and their Python bindings.

The code is organized as follows:

* `src/*.sol` — `RewardToken` (capped ERC-20, minted only by the distributor),
  `RewardDistributor` (one Merkle root per epoch over cumulative amounts, each announcing at most
  `maxMintPerEpoch` new payouts; claims pay the difference) and the `NodeStaking` it creates
  (stake, unbonding delay, slashing); custom errors in `IRewardErrors` and `IStakingErrors`.
  `build.mjs` compiles them with the pinned solc-js (`make contracts`) into `artifacts/*.json`,
  loaded by `load_artifact`; `stale_sources` tells when they are out of date (_artifacts.py).
* `RewardTree`, `leaf_hash` (_merkle.py) — OpenZeppelin StandardMerkleTree leaves, root, proofs.
* `Chain`, `EmbeddedChain`, `RpcChain`, `Signer` (_chain.py) — web3.py connections (in-process
  py-evm or JSON-RPC) and the key that signs and sends transactions.
* `NetworkTerms`, `Deployment`, `deploy_rewards`, `RewardContracts` (_rewards.py) — deploy the
  token, the distributor and its staking contract with the roles split (admin, poster, the
  distributor the only minter) and the mint caps; post roots once per epoch, claim, read balances
  and confirmations.
* `StakingContract`, `staking_address` (_staking.py) — stake, unbond, withdraw, slash, stakes;
  `staking_calls` builds an operator's calls for a key that signs elsewhere.
* `decode_raw_transaction` (_transactions.py) — a signed transaction's sender and fields, read
  before the coordinator relays it.
* `ContractRevertError`, `revert_from` (_reverts.py) — reverts named by their custom error, with
  decoded arguments.
* `Anvil`, `anvil_binary`, `ANVIL_DEV_KEYS` (_anvil.py) — a local anvil node from npm's
  @foundry-rs/anvil.

Everything blocks; async callers run it in a worker thread. The names are imported on first use,
so that `load_artifact` or `RewardTree` alone do not load web3.
"""

from typing import TYPE_CHECKING

from tokenweave import _lazy_exports

if TYPE_CHECKING:
    from tokenweave.contracts._anvil import ANVIL_DEV_KEYS, Anvil, anvil_binary
    from tokenweave.contracts._artifacts import Artifact, load_artifact, stale_sources
    from tokenweave.contracts._chain import EMBEDDED, Chain, EmbeddedChain, RpcChain, Signer
    from tokenweave.contracts._merkle import RewardTree, leaf_hash
    from tokenweave.contracts._reverts import ContractRevertError, revert_from
    from tokenweave.contracts._rewards import (
        Deployment,
        NetworkTerms,
        RewardContracts,
        deploy_rewards,
    )
    from tokenweave.contracts._staking import StakingContract, staking_address
else:
    __getattr__, __dir__ = _lazy_exports(
        __name__,
        {
            "._anvil": ("ANVIL_DEV_KEYS", "Anvil", "anvil_binary"),
            "._artifacts": ("Artifact", "load_artifact", "stale_sources"),
            "._chain": ("EMBEDDED", "Chain", "EmbeddedChain", "RpcChain", "Signer"),
            "._merkle": ("RewardTree", "leaf_hash"),
            "._reverts": ("ContractRevertError", "revert_from"),
            "._rewards": ("Deployment", "NetworkTerms", "RewardContracts", "deploy_rewards"),
            "._staking": ("StakingContract", "staking_address"),
        },
    )

__all__ = [
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
    "staking_address",
    "stale_sources",
]
