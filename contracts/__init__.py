"""The reward contracts and their Python bindings.

The code is organized as follows:

* `src/*.sol` — `RewardToken` (ERC-20, minted only by the distributor) and `RewardDistributor`
  (one Merkle root per epoch over cumulative amounts; claims pay the difference), custom errors in
  `IRewardErrors`. `build.mjs` compiles them with the pinned solc-js (`make contracts`) into
  `artifacts/*.json`, loaded by `load_artifact` (_artifacts.py).
* `RewardTree` (_merkle.py) — OpenZeppelin StandardMerkleTree leaves, root and proofs.
* `EmbeddedChain`, `RpcChain`, `Signer`, `RewardContracts`, `deploy_rewards`, `Deployment`
  (_chain.py) — web3.py bindings: deploy, post roots once, claim, read balances.
* `Anvil` (_anvil.py) — a local anvil node from npm's @foundry-rs/anvil.
"""

from tokenweave.contracts._anvil import Anvil, anvil_binary
from tokenweave.contracts._artifacts import Artifact, load_artifact, stale_sources
from tokenweave.contracts._chain import (
    EMBEDDED,
    Chain,
    ContractRevertError,
    Deployment,
    EmbeddedChain,
    RewardContracts,
    RpcChain,
    Signer,
    deploy_rewards,
)
from tokenweave.contracts._merkle import RewardTree, leaf_hash

__all__ = [
    "EMBEDDED",
    "Anvil",
    "Artifact",
    "Chain",
    "ContractRevertError",
    "Deployment",
    "EmbeddedChain",
    "RewardContracts",
    "RewardTree",
    "RpcChain",
    "Signer",
    "anvil_binary",
    "deploy_rewards",
    "leaf_hash",
    "load_artifact",
    "stale_sources",
]
