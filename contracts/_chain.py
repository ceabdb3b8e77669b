"""Chains and the account that signs for us on them.

* `Chain` — a web3 connection, where it points, and the funded development keys it has.
* `EmbeddedChain()` — web3's EthereumTesterProvider on py-evm, in this process; ten funded accounts.
* `RpcChain(url)` — any EVM JSON-RPC endpoint (anvil, a testnet).
* `Signer` — one account's key; signs every transaction locally and sends them one at a time.

Everything here blocks; async callers run it in a thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.exceptions import ContractCustomError, ContractLogicError

# `revert_from` is re-exported for callers that imported it from here before `_reverts` existed.
from tokenweave.contracts._reverts import ContractRevertError, ErrorTable
from tokenweave.contracts._reverts import revert_from as revert_from

logger = logging.getLogger(__name__)

EMBEDDED = "embedded"


@dataclass
class Chain:
    w3: Web3
    #: The JSON-RPC URL, or `EMBEDDED`.
    endpoint: str
    #: Private keys of funded development accounts (empty on a real network).
    dev_keys: tuple[bytes, ...] = ()

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)


def EmbeddedChain() -> Chain:  # noqa: N802 - reads as a constructor
    """A fresh in-process chain (py-evm, prague rules) with ten funded development accounts."""
    provider = EthereumTesterProvider()
    assert provider.ethereum_tester is not None
    keys = tuple(k.to_bytes() for k in provider.ethereum_tester.backend.account_keys)
    return Chain(Web3(provider), EMBEDDED, keys)


def RpcChain(url: str, dev_keys: Sequence[bytes] = ()) -> Chain:  # noqa: N802
    """A JSON-RPC chain; `dev_keys` are funded keys it is known to have (anvil's, in tests)."""
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
        """Fill in nonce, gas and price, sign, send, wait for the receipt.

        A transaction that would revert is not sent: `ContractRevertError` names the custom error
        found in `errors` (see `error_table`)."""
        return self.wait(self.submit(tx, errors))

    def submit(self, tx: dict[str, Any], errors: ErrorTable | None = None) -> str:
        """Like `send`, without waiting: returns the transaction's hash once the chain has it."""
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
            tx_hash = "0x" + bytes(w3.eth.send_raw_transaction(signed.raw_transaction)).hex()
        logger.debug("sent %s from %s (nonce %d)", tx_hash, self.address, nonce)
        return tx_hash

    def wait(self, tx_hash: str, timeout: float = 120.0) -> dict[str, Any]:
        """The receipt of a mined transaction; `ContractRevertError` when it failed."""
        receipt = dict(self.chain.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout))  # type: ignore[arg-type]
        if receipt["status"] != 1:
            raise ContractRevertError("unknown", f"transaction {tx_hash} failed")
        return receipt
