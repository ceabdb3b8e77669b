"""NodeStaking on a chain: operators stake reward tokens, unbond, withdraw; the poster slashes.

* `StakingContract(contracts)` — transactions (`stake` approves then stakes, `request_unstake`,
  `withdraw`, `slash`) and views (`stake_of`, `unbonding_of`, `total_staked`); a revert raises
  `ContractRevertError` naming the custom error, before anything is sent.
* `staking_address(distributor)` — where a distributor's NodeStaking lives: the distributor
  creates it in its constructor, so it is the CREATE address of the distributor at nonce 1.
* `staking_calls(...)` — the unsigned calls of an operator's staking action, for keys that sign
  elsewhere (the CLI signs, the coordinator relays).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from tokenweave.contracts._artifacts import load_artifact
from tokenweave.contracts._chain import Signer
from tokenweave.contracts._rewards import RewardContracts, _unsent


def staking_address(distributor: str) -> str:
    """The NodeStaking that `distributor` created: keccak256(rlp([distributor, 1]))[12:]."""
    sender = bytes.fromhex(to_checksum_address(distributor)[2:])
    return to_checksum_address(keccak(b"\xd6\x94" + sender + b"\x01")[12:])


def evidence_hash(evidence: bytes) -> bytes:
    """What goes on chain for an evidence record: its keccak256."""
    return keccak(evidence)


@dataclass(frozen=True, slots=True)
class Unbonding:
    amount: int
    #: Unix time from which `withdraw` pays it (0 when nothing is unbonding).
    release_at: int


@dataclass(frozen=True, slots=True)
class StakingCall:
    """One call an operator signs: `to`, `data`, and the gas it may use."""

    to: str
    data: bytes
    gas: int


#: Gas limits for calls signed without an estimate (a first stake uses about 110k).
APPROVE_GAS = 80_000
STAKING_GAS = 150_000


def staking_calls(action: str, token: str, distributor: str, amount: int = 0) -> list[StakingCall]:
    """The calls of `action` ("stake", "unstake", "withdraw") in order: a stake approves the
    staking contract for `amount`, then stakes it."""
    from web3 import Web3  # slow import: only staking needs it

    staking = Web3().eth.contract(
        address=to_checksum_address(staking_address(distributor)),
        abi=load_artifact("NodeStaking").abi,
    )
    address = str(staking.address)
    if action == "stake":
        erc20 = Web3().eth.contract(
            address=to_checksum_address(token), abi=load_artifact("RewardToken").abi
        )
        approve = erc20.encode_abi("approve", args=[address, amount])
        stake = staking.encode_abi("stake", args=[amount])
        return [
            StakingCall(str(erc20.address), bytes.fromhex(approve[2:]), APPROVE_GAS),
            StakingCall(address, bytes.fromhex(stake[2:]), STAKING_GAS),
        ]
    if action == "unstake":
        data = staking.encode_abi("requestUnstake", args=[amount])
    elif action == "withdraw":
        data = staking.encode_abi("withdraw", args=[])
    else:
        raise ValueError(f"unknown staking action {action!r}")
    return [StakingCall(address, bytes.fromhex(data[2:]), STAKING_GAS)]


class StakingContract:
    """The NodeStaking of a deployment."""

    def __init__(self, contracts: RewardContracts) -> None:
        self.contracts = contracts
        self.staking = contracts.staking
        self.token = contracts.token
        self.errors = contracts.errors

    @property
    def address(self) -> str:
        return str(self.staking.address)

    def _send(self, signer: Signer, function: Any) -> dict[str, Any]:
        return signer.send(_unsent(function, signer.address), self.errors)

    def stake(self, signer: Signer, amount: int) -> dict[str, Any]:
        """Approve the staking contract for `amount` (when needed), then stake it; the receipt
        of the stake."""
        owner = signer.address
        if self.token.functions.allowance(owner, self.address).call() < amount:
            self._send(signer, self.token.functions.approve(self.address, amount))
        return self._send(signer, self.staking.functions.stake(amount))

    def request_unstake(self, signer: Signer, amount: int) -> dict[str, Any]:
        return self._send(signer, self.staking.functions.requestUnstake(amount))

    def withdraw(self, signer: Signer) -> dict[str, Any]:
        return self._send(signer, self.staking.functions.withdraw())

    def slash_transaction(
        self, operator: str, amount: int, evidence: bytes, sender: str
    ) -> dict[str, Any]:
        """The slash call as an unsigned transaction; the evidence record's hash goes on chain."""
        function = self.staking.functions.slash(
            to_checksum_address(operator), amount, evidence_hash(evidence)
        )
        return _unsent(function, sender)

    def slash(self, signer: Signer, operator: str, amount: int, evidence: bytes) -> dict[str, Any]:
        """Take up to `amount` of `operator`'s stake (active, then unbonding); the receipt.

        Reverts: `Staking__NothingToSlash`, `Staking__ZeroAmount`, and
        `AccessControlUnauthorizedAccount` for a signer without SLASHER_ROLE."""
        return signer.send(
            self.slash_transaction(operator, amount, evidence, signer.address), self.errors
        )

    def stake_of(self, operator: str) -> int:
        return int(self.staking.functions.stakeOf(to_checksum_address(operator)).call())

    def unbonding_of(self, operator: str) -> Unbonding:
        amount, release_at = self.staking.functions.unbondingOf(
            to_checksum_address(operator)
        ).call()
        return Unbonding(int(amount), int(release_at))

    def total_staked(self) -> int:
        return int(self.staking.functions.totalStaked().call())
