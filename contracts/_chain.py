"""Chains and the reward contracts on them.

* `EmbeddedChain` — web3's EthereumTesterProvider on py-evm, in this process; ten funded accounts.
* `RpcChain(url)` — any EVM JSON-RPC endpoint (anvil, a testnet).
* `Signer` — one account's key with its own nonce counter; every transaction is signed locally.
* `RewardContracts` — the deployed RewardToken + RewardDistributor: post roots (idempotently),
  claims, balances, confirmations; a revert raises `ContractRevertError` naming the custom error.

Everything here blocks; async callers run it in a thread.
"""

from __future__ import annotations

import ast
import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from eth_abi.abi import decode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.contract import Contract
from web3.exceptions import ContractCustomError, ContractLogicError, TransactionNotFound

from tokenweave.contracts._artifacts import load_artifact
from tokenweave.errors import FailedPreconditionError

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"

#: Custom errors by 4-byte selector: (name, argument types).
ErrorTable = dict[bytes, tuple[str, list[str]]]


class ContractRevertError(FailedPreconditionError):
    """A call or transaction reverted; `error` is the custom error's name when known, `args` its
    decoded arguments."""

    def __init__(self, error: str, detail: str = "", arguments: tuple[Any, ...] = ()) -> None:
        super().__init__(f"reverted with {error}" + (f": {detail}" if detail else ""))
        self.error = error
        self.arguments = arguments


@dataclass
class Chain:
    w3: Web3
    endpoint: str
    #: Private keys of funded development accounts (empty on a real network).
    dev_keys: tuple[bytes, ...] = ()

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)


def EmbeddedChain() -> Chain:  # noqa: N802 - reads as a constructor
    provider = EthereumTesterProvider()
    assert provider.ethereum_tester is not None
    keys = tuple(k.to_bytes() for k in provider.ethereum_tester.backend.account_keys)
    return Chain(Web3(provider), EMBEDDED, keys)


def RpcChain(url: str, dev_keys: Sequence[bytes] = ()) -> Chain:  # noqa: N802
    w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": 30}))
    return Chain(w3, url, tuple(dev_keys))


class Signer:
    """Signs and sends transactions from one key, one at a time.

    The nonce is the chain's count of the account's pending transactions, read under a lock just
    before sending: it stays right after a restart, and after a reorg drops transactions.
    """

    def __init__(self, chain: Chain, key: bytes) -> None:
        self.chain = chain
        self.account: LocalAccount = Account.from_key(key)
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return str(self.account.address)

    def send(self, tx: dict[str, Any], errors: ErrorTable | None = None) -> dict[str, Any]:
        """Fill in nonce, gas and price, sign, send, wait for the receipt; raise on revert."""
        w3 = self.chain.w3
        with self._lock:
            nonce = w3.eth.get_transaction_count(self.account.address, "pending")
            tx = {"from": self.account.address, "chainId": self.chain.chain_id, **tx}
            if "maxFeePerGas" not in tx:
                tx.setdefault("gasPrice", w3.eth.gas_price)
            try:
                tx.setdefault("gas", int(w3.eth.estimate_gas(tx) * 1.2) + 10_000)  # type: ignore[arg-type]
            except (ContractCustomError, ContractLogicError, TransactionFailed) as exc:
                raise revert_from(exc, errors or {}) from exc
            tx["nonce"] = nonce
            signed = self.account.sign_transaction(tx)
            tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120))
        if receipt["status"] != 1:
            raise ContractRevertError("unknown", f"transaction {tx_hash.hex()} failed")
        return receipt


def _selectors(abi: Sequence[Any]) -> dict[bytes, tuple[str, list[str]]]:
    """Custom errors by selector: (name, argument types)."""
    out = {}
    for item in abi:
        if item.get("type") == "error":
            types = [i["type"] for i in item["inputs"]]
            out[keccak(text=f"{item['name']}({','.join(types)})")[:4]] = (item["name"], types)
    return out


def _revert_data(exc: Exception) -> bytes | None:
    """The revert payload of a failed call, from web3 (JSON-RPC) or eth-tester (embedded)."""
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    message = str(exc.args[0]) if exc.args else ""
    prefix = "execution reverted: "
    if message.startswith(prefix + "b'") or message.startswith(prefix + 'b"'):
        # eth-tester puts the payload's repr in the message.
        with contextlib.suppress(ValueError, SyntaxError):
            value = ast.literal_eval(message[len(prefix) :])
            if isinstance(value, bytes):
                return value
    return None


def revert_from(exc: Exception, errors: ErrorTable) -> ContractRevertError:
    """The revert as `ContractRevertError`, named and decoded by the custom error's selector."""
    data = _revert_data(exc)
    if data is not None and len(data) >= 4 and data[:4] in errors:
        name, types = errors[data[:4]]
        with contextlib.suppress(Exception):
            arguments = tuple(
                to_checksum_address(v) if t == "address" else v
                for t, v in zip(types, decode(types, data[4:]), strict=True)
            )
            return ContractRevertError(name, f"{name}{arguments}", arguments)
        return ContractRevertError(name, "0x" + data.hex())
    return ContractRevertError("unknown", str(exc))


@dataclass(frozen=True)
class Deployment:
    chain_id: int
    token: str
    distributor: str
    coordinator: str
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
    """Deploy RewardToken and RewardDistributor; the distributor mints, `coordinator` posts."""
    w3 = signer.chain.w3
    token_tx = (
        _contract(w3, "RewardToken")
        .constructor(signer.address)
        .build_transaction({"from": signer.address})
    )
    token = signer.send(dict(token_tx))["contractAddress"]
    distributor_tx = (
        _contract(w3, "RewardDistributor")
        .constructor(token, signer.address, to_checksum_address(coordinator))
        .build_transaction({"from": signer.address})
    )
    receipt = signer.send(dict(distributor_tx))
    distributor = receipt["contractAddress"]
    token_contract = _contract(w3, "RewardToken", token)
    minter = token_contract.functions.MINTER_ROLE().call()
    signer.send(
        dict(
            token_contract.functions.grantRole(minter, distributor).build_transaction(
                {"from": signer.address}
            )
        )
    )
    logger.info("deployed RewardToken %s and RewardDistributor %s", token, distributor)
    return Deployment(
        chain_id=signer.chain.chain_id,
        token=str(token),
        distributor=str(distributor),
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
        self.errors = _selectors(self.distributor.abi) | _selectors(self.token.abi)

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
        """Post `root` for `epoch` once: an epoch already on chain with this root is not sent
        again (its transaction is returned); with another root it is an error."""
        latest = self.latest_epoch()
        if latest >= epoch:
            found = self.posted_in(epoch)
            if found is None or found[2] != root:
                raise ContractRevertError(
                    "Reward__EpochNotIncreasing",
                    f"epoch {epoch} is not after {latest}"
                    + ("" if found is None else f" and was posted with root 0x{found[2].hex()}"),
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
        tx = self.claim_transaction(account, cumulative, proof, signer.address)
        return signer.send(tx, self.errors)

    def confirmations(self, tx_hash: str) -> int | None:
        """1 when mined in the latest block; None when the chain does not know the transaction."""
        try:
            receipt = self.chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        return int(self.chain.w3.eth.block_number) - int(receipt["blockNumber"]) + 1
