"""ContractRewardChain: the coordinator's side of the reward contracts, on one chain.

Opens the embedded chain (deploying the contracts into it) or a JSON-RPC chain (reusing the
deployment recorded in the data dir, or deploying once), and serves the settler and the
RewardsService. All chain access goes through one lock: py-evm is not thread-safe, and one nonce
counter per key keeps transactions in order.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from eth_account import Account
from eth_tester.exceptions import TransactionFailed
from eth_utils.address import to_checksum_address
from requests.exceptions import RequestException
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
)

from tokenweave.contracts import (
    EMBEDDED,
    Chain,
    Deployment,
    EmbeddedChain,
    RewardContracts,
    RpcChain,
    Signer,
    deploy_rewards,
    revert_from,
)
from tokenweave.coordinator._settlement import SentTransaction
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, UnavailableError
from tokenweave.types import ChainInfo

logger = logging.getLogger(__name__)

DEPLOYMENT_FILE = "deployment.json"


class ContractRewardChain:
    def __init__(self, contracts: RewardContracts, signer: Signer) -> None:
        self._contracts = contracts
        self._signer = signer
        self._lock = threading.Lock()
        d = contracts.deployment
        self.info = ChainInfo(
            contracts.chain.chain_id, contracts.chain.endpoint, d.token, d.distributor
        )

    @contextlib.contextmanager
    def _access(self) -> Iterator[None]:
        """One caller at a time; a chain that cannot be reached is UNAVAILABLE, not a crash."""
        with self._lock:
            try:
                yield
            except (OSError, RequestException, ProviderConnectionError, TimeExhausted) as exc:
                raise UnavailableError(
                    f"chain {self.info.endpoint} is unreachable: {type(exc).__name__}: {exc}"
                ) from exc

    @property
    def contracts(self) -> RewardContracts:
        return self._contracts

    def post_root(self, epoch: int, root: bytes) -> tuple[str, int | None]:
        with self._access():
            return self._contracts.post_root(self._signer, epoch, root)

    def confirmations(self, tx_hash: str) -> int | None:
        with self._access():
            return self._contracts.confirmations(tx_hash)

    def claimed(self, address: str) -> int:
        with self._access():
            return self._contracts.claimed(address)

    def balance(self, address: str) -> int:
        with self._access():
            return self._contracts.balance_of(address)

    def nonce(self, address: str) -> int:
        with self._access():
            w3 = self._contracts.chain.w3
            return int(w3.eth.get_transaction_count(to_checksum_address(address), "pending"))

    def gas_price(self) -> int:
        with self._access():
            return int(self._contracts.chain.w3.eth.gas_price)

    def fund(self, address: str, minimum_wei: int) -> None:
        with self._access():
            w3 = self._contracts.chain.w3
            have = int(w3.eth.get_balance(to_checksum_address(address)))
            if have < minimum_wei:
                self._signer.send({"to": to_checksum_address(address), "value": minimum_wei - have})
                logger.info("faucet: sent %d wei to %s for gas", minimum_wei - have, address)

    def send_raw(self, raw: bytes) -> SentTransaction:
        with self._access():
            w3 = self._contracts.chain.w3
            try:
                tx = Account.recover_transaction(raw)
            except Exception as exc:
                raise InvalidArgumentError(f"not a signed transaction: {exc}") from exc
            try:
                tx_hash = w3.eth.send_raw_transaction(raw)
            except (ContractCustomError, ContractLogicError, TransactionFailed, ValueError) as exc:
                error = revert_from(exc, self._contracts.errors)
                if error.error == "unknown":
                    raise InvalidArgumentError(
                        f"the chain refused the transaction from {tx}: {exc}"
                    ) from exc
                return SentTransaction("", False, 0, 0, error.error)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
            return SentTransaction(
                "0x" + bytes(tx_hash).hex(),
                receipt["status"] == 1,
                int(receipt["blockNumber"]),
                int(receipt["gasUsed"]),
            )


def open_reward_chain(endpoint: str, key: str | None, data_dir: Path) -> ContractRewardChain:
    """The embedded chain with fresh contracts, or `endpoint` with the recorded deployment."""
    if endpoint == EMBEDDED:
        chain = EmbeddedChain()
        signer = Signer(chain, _parse_key(key) if key else chain.dev_keys[0])
        deployment = deploy_rewards(signer, signer.address)
        return ContractRewardChain(RewardContracts(chain, deployment), signer)
    if not key:
        raise InvalidArgumentError(
            f"--chain {endpoint} needs the coordinator's key (--chain-key or TOKENWEAVE_CHAIN_KEY)"
        )
    chain = RpcChain(endpoint)
    try:
        chain_id = chain.chain_id
    except Exception as exc:
        raise FailedPreconditionError(f"chain {endpoint} does not answer: {exc}") from exc
    signer = Signer(chain, _parse_key(key))
    recorded = _recorded(chain, data_dir / DEPLOYMENT_FILE, chain_id)
    if recorded is None:
        deployment = deploy_rewards(signer, signer.address)
        deployment.save(data_dir / DEPLOYMENT_FILE)
    elif to_checksum_address(recorded.coordinator) != signer.address:
        raise FailedPreconditionError(
            f"{data_dir / DEPLOYMENT_FILE} names coordinator {recorded.coordinator}, "
            f"but the chain key is {signer.address}"
        )
    else:
        deployment = recorded
    return ContractRewardChain(RewardContracts(chain, deployment), signer)


def _parse_key(key: str) -> bytes:
    try:
        raw = bytes.fromhex(key.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidArgumentError("--chain-key must be a private key: 32 bytes as 64 hex digits")
    return raw


def _recorded(chain: Chain, path: Path, chain_id: int) -> Deployment | None:
    """The deployment in `path` if it is on this chain and its contract is there."""
    if not path.exists():
        return None
    deployment = Deployment.load(path)
    code = chain.w3.eth.get_code(to_checksum_address(deployment.distributor))
    if deployment.chain_id != chain_id or not code:
        logger.warning("%s is for another chain (or a reset one); deploying again", path)
        return None
    return deployment
