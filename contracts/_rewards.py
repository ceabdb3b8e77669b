"""The reward contracts on a chain.

* `Deployment` — where RewardToken and RewardDistributor live (saved and loaded as JSON).
* `deploy_rewards(signer, coordinator)` — deploys both; the distributor mints, `coordinator` posts.
* `RewardContracts` — the deployed pair: post roots (once per epoch), claims, balances,
  confirmations; a revert raises `ContractRevertError` naming the custom error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_utils.address import to_checksum_address
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import TransactionNotFound

from tokenweave.contracts._artifacts import load_artifact
from tokenweave.contracts._chain import Chain, Signer
from tokenweave.contracts._reverts import ContractRevertError, error_table
from tokenweave.errors import FailedPreconditionError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    token: str
    distributor: str
    #: The address holding COORDINATOR_ROLE.
    coordinator: str
    #: The block of the distributor's deployment: event queries start there.
    block_number: int

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Deployment:
        return cls(**json.loads(path.read_text()))


def _unsent(function: Any, sender: str) -> dict[str, Any]:
    """A contract call as a transaction for `Signer.send` (which estimates gas and decodes
    reverts): built with a placeholder gas limit so that web3 does not estimate it here."""
    tx = dict(function.build_transaction({"from": to_checksum_address(sender), "gas": 1}))
    for key in ("gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"):
        tx.pop(key, None)
    return tx


def _contract(w3: Web3, name: str, address: str | None = None) -> Contract:
    artifact = load_artifact(name)
    if address is None:
        return w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)  # type: ignore[return-value]
    return w3.eth.contract(address=to_checksum_address(address), abi=artifact.abi)


def deploy_rewards(signer: Signer, coordinator: str) -> Deployment:
    """Deploy RewardToken and RewardDistributor; the distributor mints, `coordinator` posts.

    `signer` pays for the three transactions and becomes the admin of both contracts."""
    w3 = signer.chain.w3
    token_tx = _contract(w3, "RewardToken").constructor(signer.address)
    token = signer.send(dict(token_tx.build_transaction({"from": signer.address})))
    token_address = str(token["contractAddress"])
    distributor_tx = _contract(w3, "RewardDistributor").constructor(
        token_address, signer.address, to_checksum_address(coordinator)
    )
    receipt = signer.send(dict(distributor_tx.build_transaction({"from": signer.address})))
    distributor = str(receipt["contractAddress"])
    token_contract = _contract(w3, "RewardToken", token_address)
    minter = token_contract.functions.MINTER_ROLE().call()
    grant = token_contract.functions.grantRole(minter, distributor)
    signer.send(dict(grant.build_transaction({"from": signer.address})))
    logger.info("deployed RewardToken %s and RewardDistributor %s", token_address, distributor)
    return Deployment(
        chain_id=signer.chain.chain_id,
        token=token_address,
        distributor=distributor,
        coordinator=to_checksum_address(coordinator),
        block_number=int(receipt["blockNumber"]),
    )


class RewardContracts:
    """The deployed pair on a chain."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        if chain.chain_id != deployment.chain_id:
            raise FailedPreconditionError(
                f"the deployment is for chain {deployment.chain_id}; "
                f"{chain.endpoint} is chain {chain.chain_id}"
            )
        self.chain = chain
        self.deployment = deployment
        self.token = _contract(chain.w3, "RewardToken", deployment.token)
        self.distributor = _contract(chain.w3, "RewardDistributor", deployment.distributor)
        #: Custom errors of both contracts by selector, for `revert_from`.
        self.errors = error_table(self.distributor.abi) | error_table(self.token.abi)

    def latest_epoch(self) -> int:
        return int(self.distributor.functions.latestEpoch().call())

    def latest_root(self) -> bytes:
        return bytes(self.distributor.functions.latestRoot().call())

    def claimed(self, address: str) -> int:
        return int(self.distributor.functions.claimed(to_checksum_address(address)).call())

    def balance_of(self, address: str) -> int:
        return int(self.token.functions.balanceOf(to_checksum_address(address)).call())

    def posted_in(self, epoch: int) -> tuple[str, int, bytes] | None:
        """(tx hash, block, root) of the RootPosted event of `epoch`, if the chain has one."""
        logs = self.distributor.events.RootPosted().get_logs(
            from_block=self.deployment.block_number, argument_filters={"epoch": epoch}
        )
        if not logs:
            return None
        log = logs[-1]
        return (
            "0x" + bytes(log["transactionHash"]).hex(),
            int(log["blockNumber"]),
            bytes(log["args"]["root"]),
        )

    def post_root(self, signer: Signer, epoch: int, root: bytes) -> tuple[str, int]:
        """Post `root` for `epoch` once; returns (tx hash, block).

        An epoch already on chain with this root is not sent again (its transaction is returned);
        with another root, or an epoch skipped over, it is `Reward__EpochNotIncreasing` with the
        contract's arguments (epoch, latest), raised without sending anything."""
        latest = self.latest_epoch()
        if latest >= epoch:
            found = self.posted_in(epoch)
            if found is None or found[2] != root:
                raise ContractRevertError(
                    "Reward__EpochNotIncreasing",
                    f"epoch {epoch} is not after {latest}"
                    + ("" if found is None else f" and was posted with root 0x{found[2].hex()}"),
                    (epoch, latest),
                )
            logger.info("epoch %d is already on chain (%s); not sent again", epoch, found[0])
            return found[0], found[1]
        tx = _unsent(self.distributor.functions.postRoot(epoch, root), signer.address)
        receipt = signer.send(tx, self.errors)
        return "0x" + bytes(receipt["transactionHash"]).hex(), int(receipt["blockNumber"])

    def claim_transaction(
        self, account: str, cumulative: int, proof: Sequence[bytes], sender: str
    ) -> dict[str, Any]:
        """The claim call as an unsigned transaction without nonce, gas or fees."""
        function = self.distributor.functions.claim(
            to_checksum_address(account), cumulative, list(proof)
        )
        return _unsent(function, sender)

    def claim(
        self, signer: Signer, account: str, cumulative: int, proof: Sequence[bytes]
    ) -> dict[str, Any]:
        """Claim for `account` (paid to it, whoever `signer` is); returns the receipt.

        Reverts (raised before sending): `Reward__InvalidProof`, `Reward__NothingToClaim`
        (account, cumulative, claimed) when the leaf pays nothing more, `Reward__NoRoot`."""
        tx = self.claim_transaction(account, cumulative, proof, signer.address)
        return signer.send(tx, self.errors)

    def confirmations(self, tx_hash: str) -> int | None:
        """1 when mined in the latest block; None when the chain does not know the transaction."""
        try:
            receipt = self.chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return int(self.chain.w3.eth.block_number) - int(receipt["blockNumber"]) + 1
