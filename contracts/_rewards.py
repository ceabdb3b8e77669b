"""The reward contracts on a chain.

* `NetworkTerms` — what a deployment fixes: supply cap, per-epoch mint cap, least time between
  roots, unbonding delay, treasury.
* `Deployment` — where RewardToken, RewardDistributor and NodeStaking live (saved as JSON).
* `deploy_rewards(admin, poster, terms)` — deploys them with the roles split: `admin` holds
  DEFAULT_ADMIN_ROLE everywhere, `poster` posts roots and slashes, the distributor alone mints.
* `RewardContracts` — the deployed trio: post roots (once per epoch), claims, balances,
  confirmations; a revert raises `ContractRevertError` naming the custom error. Staking
  transactions are in `StakingContract` (_staking.py).
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


TOKEN = 10**18


@dataclass(frozen=True)
class NetworkTerms:
    """What a deployment fixes (amounts in wei of the reward token)."""

    #: The hard limit on the token's supply.
    supply_cap: int = 10**9 * TOKEN
    #: The most one epoch's root may add to what can be claimed (the admin can change it).
    max_mint_per_epoch: int = 10**6 * TOKEN
    #: The least time between two roots; 0 on development chains, where epochs close on command.
    min_post_interval_s: int = 0
    #: How long unstaked tokens stay slashable; 7 days on a real network.
    unbonding_delay_s: int = 7 * 24 * 3600
    #: Receives slashed stake; None burns it.
    treasury: str | None = None


#: Development chains (embedded, anvil testnets): a short unbonding delay.
DEV_TERMS = NetworkTerms(unbonding_delay_s=60)


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    token: str
    distributor: str
    #: The address holding COORDINATOR_ROLE (the poster key; it also slashes).
    coordinator: str
    #: The block of the distributor's deployment: event queries start there.
    block_number: int
    #: The address holding DEFAULT_ADMIN_ROLE ("" in records made before roles were split).
    admin: str = ""
    #: The NodeStaking contract the distributor created ("" in records made before staking).
    staking: str = ""

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


def deploy_rewards(admin: Signer, poster: str, terms: NetworkTerms = DEV_TERMS) -> Deployment:
    """Deploy RewardToken, then RewardDistributor (which creates NodeStaking), and make the
    distributor the token's one minter.

    `admin` pays for the three transactions and holds DEFAULT_ADMIN_ROLE on all three contracts
    (it neither posts nor mints); `poster` posts roots and slashes."""
    w3 = admin.chain.w3
    token_tx = _contract(w3, "RewardToken").constructor(admin.address, terms.supply_cap)
    token = admin.send(dict(token_tx.build_transaction({"from": admin.address})))
    token_address = str(token["contractAddress"])
    distributor_tx = _contract(w3, "RewardDistributor").constructor(
        token_address,
        admin.address,
        to_checksum_address(poster),
        terms.max_mint_per_epoch,
        terms.min_post_interval_s,
        to_checksum_address(terms.treasury or "0x" + "00" * 20),
        terms.unbonding_delay_s,
    )
    receipt = admin.send(dict(distributor_tx.build_transaction({"from": admin.address})))
    distributor = str(receipt["contractAddress"])
    staking = str(_contract(w3, "RewardDistributor", distributor).functions.staking().call())
    token_contract = _contract(w3, "RewardToken", token_address)
    minter = token_contract.functions.MINTER_ROLE().call()
    grant = token_contract.functions.grantRole(minter, distributor)
    admin.send(dict(grant.build_transaction({"from": admin.address})))
    logger.info(
        "deployed RewardToken %s, RewardDistributor %s and NodeStaking %s (admin %s, poster %s)",
        token_address,
        distributor,
        staking,
        admin.address,
        poster,
    )
    return Deployment(
        chain_id=admin.chain.chain_id,
        token=token_address,
        distributor=distributor,
        coordinator=to_checksum_address(poster),
        block_number=int(receipt["blockNumber"]),
        admin=admin.address,
        staking=staking,
    )


class RewardContracts:
    """The deployed contracts on a chain."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        if chain.chain_id != deployment.chain_id:
            raise FailedPreconditionError(
                f"the deployment is for chain {deployment.chain_id}; "
                f"{chain.endpoint} is chain {chain.chain_id}"
            )
        if not deployment.staking:
            raise FailedPreconditionError(
                "the deployment predates NodeStaking (it names no staking contract); "
                "deploy the contracts anew"
            )
        self.chain = chain
        self.deployment = deployment
        self.token = _contract(chain.w3, "RewardToken", deployment.token)
        self.distributor = _contract(chain.w3, "RewardDistributor", deployment.distributor)
        self.staking = _contract(chain.w3, "NodeStaking", deployment.staking)
        #: Custom errors of every contract by selector, for `revert_from`.
        self.errors = (
            error_table(self.distributor.abi)
            | error_table(self.token.abi)
            | error_table(self.staking.abi)
        )

    def latest_epoch(self) -> int:
        return int(self.distributor.functions.latestEpoch().call())

    def latest_root(self) -> bytes:
        return bytes(self.distributor.functions.latestRoot().call())

    def claimed(self, address: str) -> int:
        return int(self.distributor.functions.claimed(to_checksum_address(address)).call())

    def balance_of(self, address: str) -> int:
        return int(self.token.functions.balanceOf(to_checksum_address(address)).call())

    def unclaimed_allowance(self) -> int:
        """What posted roots announced and claims have not paid yet."""
        return int(self.distributor.functions.unclaimedAllowance().call())

    def max_mint_per_epoch(self) -> int:
        return int(self.distributor.functions.maxMintPerEpoch().call())

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

    def post_root(
        self, signer: Signer, epoch: int, root: bytes, amount: int, *, wait: bool = True
    ) -> tuple[str, int | None]:
        """Post `root` for `epoch` once, announcing `amount` (the epoch's increase in total
        cumulative payouts); returns (tx hash, block), the block None when `wait` is False and
        the transaction was just sent.

        An epoch already on chain with this root is not sent again (its transaction is returned);
        with another root, or an epoch skipped over, it is `Reward__EpochNotIncreasing` with the
        contract's arguments (epoch, latest), raised without sending anything. Above the cap it
        is `Reward__MintCapExceeded` (amount, cap), also raised without sending."""
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
        tx = _unsent(self.distributor.functions.postRoot(epoch, root, amount), signer.address)
        tx_hash = signer.submit(tx, self.errors)
        if not wait:
            return tx_hash, None
        return tx_hash, int(signer.wait(tx_hash)["blockNumber"])

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
