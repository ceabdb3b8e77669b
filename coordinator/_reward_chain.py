"""ContractRewardChain: the coordinator's side of the reward contracts, on one chain.

Opens the embedded chain (deploying the contracts into it) or a JSON-RPC chain (reusing the
deployment recorded in the data dir, or deploying once), and serves the settler, the
RewardsService and slashing. Two keys: the admin key (`--chain-key`) deploys and holds
DEFAULT_ADMIN_ROLE; the poster key posts roots, slashes and pays the faucet. Only the poster key
is used after deployment.

Every chain call goes through one lock (py-evm is not thread-safe, and one nonce counter per key
keeps transactions in order), but only for the call itself: waiting for a receipt polls, taking
the lock for each poll, so a transaction that is slow to be mined holds up nobody else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eth_tester.exceptions import TransactionFailed
from eth_utils.address import to_checksum_address
from eth_utils.exceptions import ValidationError
from requests.exceptions import RequestException
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ProviderConnectionError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)

from tokenweave.contracts import (
    EMBEDDED,
    Chain,
    ContractRevertError,
    Deployment,
    EmbeddedChain,
    NetworkTerms,
    RewardContracts,
    RpcChain,
    Signer,
    StakingContract,
    deploy_rewards,
    revert_from,
)
from tokenweave.contracts._rewards import DEV_TERMS
from tokenweave.contracts._transactions import decode_raw_transaction
from tokenweave.coordinator._settlement import SentTransaction
from tokenweave.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
)
from tokenweave.types import ChainInfo

logger = logging.getLogger(__name__)

#: How chains refuse a transaction that is not a revert: JSON-RPC errors (nonce too low,
#: insufficient funds), and eth-tester's validation of the embedded chain.
_REFUSALS = (Web3RPCError, ValidationError, ValueError)

DEPLOYMENT_FILE = "deployment.json"
#: The environment variable holding the poster key of a JSON-RPC chain.
POSTER_KEY_ENV = "TOKENWEAVE_POSTER_KEY"
#: Chain ids of development nodes (anvil, hardhat): short unbonding, as on the embedded chain.
DEV_CHAIN_IDS = frozenset({31337, 1337})
#: How long the relay waits for a relayed transaction to be mined.
RELAY_WAIT_S = 30.0
#: Relayed transactions sent and not yet mined, at most; more are refused before being sent.
MAX_UNMINED_RELAYED = 4
#: How long the settler and slashing wait for their own transactions.
OWN_WAIT_S = 120.0


class ContractRewardChain:
    def __init__(
        self, contracts: RewardContracts, poster: Signer, *, relay_wait_s: float = RELAY_WAIT_S
    ) -> None:
        self._contracts = contracts
        self._staking = StakingContract(contracts)
        self._signer = poster
        self._lock = threading.Lock()
        self._relay_wait_s = relay_wait_s
        self._unmined = threading.BoundedSemaphore(MAX_UNMINED_RELAYED)
        d = contracts.deployment
        self.info = ChainInfo(
            contracts.chain.chain_id, contracts.chain.endpoint, d.token, d.distributor
        )
        #: The only addresses the relay sends calls to.
        self._relayable = {to_checksum_address(a) for a in (d.token, d.distributor, d.staking)}

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """A chain that cannot be reached is UNAVAILABLE, not a crash."""
        try:
            yield
        except (OSError, RequestException, ProviderConnectionError, TimeExhausted) as exc:
            raise UnavailableError(
                f"chain {self.info.endpoint} is unreachable: {type(exc).__name__}: {exc}"
            ) from exc

    @contextlib.contextmanager
    def _access(self) -> Iterator[None]:
        """One caller at a time, for one call."""
        with self._lock, self._reachable():
            yield

    @property
    def contracts(self) -> RewardContracts:
        return self._contracts

    @property
    def staking(self) -> StakingContract:
        return self._staking

    def _receipt(self, tx_hash: str, timeout: float) -> dict[str, Any] | None:
        """The receipt once mined, None after `timeout`; polls, never holding the lock between
        polls."""
        w3 = self._contracts.chain.w3
        deadline = time.monotonic() + timeout
        pause = 0.02
        while True:
            with self._access(), contextlib.suppress(TransactionNotFound):
                return dict(w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
            if time.monotonic() + pause > deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.5)

    def _mined(self, tx_hash: str) -> dict[str, Any]:
        """The receipt of one of our own transactions; it must succeed."""
        receipt = self._receipt(tx_hash, OWN_WAIT_S)
        if receipt is None:
            raise UnavailableError(f"transaction {tx_hash} was not mined within {OWN_WAIT_S:.0f} s")
        if receipt["status"] != 1:
            raise ContractRevertError("unknown", f"transaction {tx_hash} failed")
        return receipt

    def post_root(self, epoch: int, root: bytes, amount_wei: int) -> tuple[str, int | None]:
        """Post the root of `epoch`, announcing `amount_wei` new payouts (see RewardDistributor)."""
        with self._access():
            tx_hash, block = self._contracts.post_root(
                self._signer, epoch, root, amount_wei, wait=False
            )
        if block is None:
            block = int(self._mined(tx_hash)["blockNumber"])
        return tx_hash, block

    def stake_of(self, address: str) -> int:
        """The operator's active stake, in wei of the reward token."""
        with self._access():
            return self._staking.stake_of(address)

    def unbonding_of(self, address: str) -> int:
        """The operator's stake on its way out, in wei: still slashable until withdrawn."""
        with self._access():
            return self._staking.unbonding_of(address).amount

    def slash(self, address: str, amount_wei: int, evidence: bytes) -> str:
        """Take up to `amount_wei` of the operator's stake; `evidence` is the record whose
        keccak256 goes on chain. Returns the transaction's hash once mined; reverts
        (`Staking__NothingToSlash`, ...) raise `ContractRevertError` before anything is sent."""
        with self._access():
            tx = self._staking.slash_transaction(
                address, amount_wei, evidence, self._signer.address
            )
            tx_hash = self._signer.submit(tx, self._contracts.errors)
        self._mined(tx_hash)
        logger.info("slashed %s by up to %d wei (%s)", address, amount_wei, tx_hash)
        return tx_hash

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
            if have >= minimum_wei:
                return
            tx_hash = self._signer.submit(
                {"to": to_checksum_address(address), "value": minimum_wei - have}
            )
        self._mined(tx_hash)
        logger.info("faucet: sent %d wei to %s for gas", minimum_wei - have, address)

    def send_raw(self, raw: bytes) -> SentTransaction:
        """Relay a transaction signed elsewhere: only a call to the reward contracts, only with
        the sender's next nonce, and only one that would succeed now (simulated first).

        Refusals: `InvalidArgumentError` (not a signed transaction, another chain, another
        address, a nonce that is not next, a fee below the base fee), `ContractRevertError` (a
        FAILED_PRECONDITION naming the custom error the simulation reverted with),
        `ResourceExhaustedError` while `MAX_UNMINED_RELAYED` relayed transactions wait to be
        mined. A transaction not mined within the relay's wait is `UnavailableError` (it may
        still be mined)."""
        tx = decode_raw_transaction(raw)
        if tx.chain_id is not None and tx.chain_id != self.info.chain_id:
            raise InvalidArgumentError(
                f"the transaction is for chain {tx.chain_id}; this is chain {self.info.chain_id}"
            )
        if tx.to not in self._relayable:
            raise InvalidArgumentError(
                f"the relay sends only calls to the reward contracts, not to {tx.to or 'create'}"
            )
        w3 = self._contracts.chain.w3
        with self._access():
            sender = to_checksum_address(tx.sender)
            expected = int(w3.eth.get_transaction_count(sender, "pending"))
            if tx.nonce != expected:
                raise InvalidArgumentError(
                    f"nonce {tx.nonce} is not the next of {tx.sender}: expected {expected}"
                )
            base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0))
            if tx.max_fee < base_fee:
                raise InvalidArgumentError(
                    f"a fee of {tx.max_fee} wei per gas is below the base fee ({base_fee}); "
                    "the transaction would never be mined"
                )
            call = {"from": tx.sender, "to": tx.to, "data": tx.data, "value": tx.value}
            try:
                w3.eth.call({**call, "gas": tx.gas})  # type: ignore[typeddict-item]
            except (ContractCustomError, ContractLogicError, TransactionFailed) as exc:
                raise revert_from(exc, self._contracts.errors) from exc
            except _REFUSALS as exc:
                raise InvalidArgumentError(f"the transaction cannot run: {exc}") from exc
            if not self._unmined.acquire(blocking=False):
                raise ResourceExhaustedError(
                    f"{MAX_UNMINED_RELAYED} relayed transactions wait to be mined; "
                    "try again shortly"
                )
            try:
                tx_hash = "0x" + bytes(w3.eth.send_raw_transaction(raw)).hex()
            except (ContractCustomError, ContractLogicError, TransactionFailed, *_REFUSALS) as exc:
                self._unmined.release()
                raise InvalidArgumentError(f"the chain refused the transaction: {exc}") from exc
            except BaseException:
                self._unmined.release()
                raise
        try:
            receipt = self._receipt(tx_hash, self._relay_wait_s)
        finally:
            self._unmined.release()
        if receipt is None:
            raise UnavailableError(
                f"transaction {tx_hash} was sent but not mined within "
                f"{self._relay_wait_s:.0f} s; it may still be"
            )
        success = receipt["status"] == 1
        return SentTransaction(
            tx_hash,
            success,
            int(receipt["blockNumber"]),
            int(receipt["gasUsed"]),
            "" if success else "reverted when mined",
        )


def open_reward_chain(
    endpoint: str,
    key: str | None,
    data_dir: Path,
    *,
    poster_key: str | None = None,
    unbonding_delay_s: int | None = None,
    max_mint_per_epoch_wei: int | None = None,
) -> ContractRewardChain:
    """The embedded chain with fresh contracts, or `endpoint` with the recorded deployment.

    `key` is the admin key: it deploys and holds DEFAULT_ADMIN_ROLE. The poster key posts roots
    and slashes: on the embedded chain a funded development key of its own; on a JSON-RPC chain
    `poster_key`, else `$TOKENWEAVE_POSTER_KEY`, else (with a warning) the admin key.

    A new deployment takes `NetworkTerms()` (7 days of unbonding), or `DEV_TERMS` (60 s) on
    development chains (the embedded chain, chain ids 31337 and 1337), with `unbonding_delay_s`
    and `max_mint_per_epoch_wei` in place of theirs when given; a recorded deployment keeps the
    terms it was made with."""

    def terms(dev: bool) -> NetworkTerms:
        chosen = DEV_TERMS if dev else NetworkTerms()
        if unbonding_delay_s is not None:
            chosen = dataclasses.replace(chosen, unbonding_delay_s=unbonding_delay_s)
        if max_mint_per_epoch_wei is not None:
            chosen = dataclasses.replace(chosen, max_mint_per_epoch=max_mint_per_epoch_wei)
        return chosen

    if endpoint == EMBEDDED:
        chain = EmbeddedChain()
        admin = Signer(chain, _parse_key(key) if key else chain.dev_keys[0])
        poster = Signer(chain, _parse_key(poster_key) if poster_key else chain.dev_keys[1])
        deployment = deploy_rewards(admin, poster.address, terms(dev=True))
        return ContractRewardChain(RewardContracts(chain, deployment), poster)
    if not key:
        raise InvalidArgumentError(
            f"--chain {endpoint} needs the coordinator's key (--chain-key or TOKENWEAVE_CHAIN_KEY)"
        )
    chain = RpcChain(endpoint)
    try:
        chain_id = chain.chain_id
    except Exception as exc:
        raise FailedPreconditionError(f"chain {endpoint} does not answer: {exc}") from exc
    admin = Signer(chain, _parse_key(key))
    poster = Signer(chain, _parse_key(_poster_key(poster_key, key)))
    recorded = _recorded(chain, data_dir / DEPLOYMENT_FILE, chain_id)
    if recorded is None:
        deployment = deploy_rewards(admin, poster.address, terms(chain_id in DEV_CHAIN_IDS))
        deployment.save(data_dir / DEPLOYMENT_FILE)
    elif to_checksum_address(recorded.coordinator) != poster.address:
        raise FailedPreconditionError(
            f"{data_dir / DEPLOYMENT_FILE} names coordinator {recorded.coordinator}, "
            f"but the poster key is {poster.address}"
        )
    else:
        deployment = recorded
    if poster.address != admin.address and not chain.w3.eth.get_balance(poster.account.address):
        logger.warning("the poster %s has no ether to pay for its transactions", poster.address)
    return ContractRewardChain(RewardContracts(chain, deployment), poster)


def _poster_key(given: str | None, admin_key: str) -> str:
    key = given or os.environ.get(POSTER_KEY_ENV)
    if key:
        return key
    logger.warning(
        "no poster key (%s): the admin key posts roots and slashes too; keep the admin key "
        "offline by giving the coordinator a poster key of its own",
        POSTER_KEY_ENV,
    )
    return admin_key


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
