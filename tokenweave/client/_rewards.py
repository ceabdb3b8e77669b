"""Rewards in the SDK: epochs, an operator's earnings, and claims signed with the operator's key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tokenweave.contracts import load_artifact
from tokenweave.errors import FailedPreconditionError, TokenweaveError
from tokenweave.types import ChainInfo, EpochInfo, EpochState
from tokenweave.v1 import rewards_pb2

__all__ = [
    "ChainInfo",
    "ClaimResult",
    "EpochEarning",
    "EpochInfo",
    "OperatorRewards",
    "chain_info",
    "epoch_info",
    "operator_rewards",
    "signed_claim",
]

#: Gas limit of a claim transaction (a first claim uses about 103k).
CLAIM_GAS = 200_000


@dataclass(frozen=True, slots=True)
class EpochEarning:
    epoch: int
    state: EpochState
    tokens: int
    earned: str
    cumulative: str


@dataclass(frozen=True, slots=True)
class OperatorRewards:
    address: str
    tokens: int
    earned: str
    unsettled: str
    claimed: str
    claimable: str
    balance: str
    epochs: tuple[EpochEarning, ...]


@dataclass(frozen=True, slots=True)
class ClaimResult:
    tx_hash: str
    epoch: int
    #: Paid by this claim, in wei of the reward token.
    amount_wei: int
    gas_used: int


def _state(value: int) -> EpochState:
    name = rewards_pb2.EpochState.Name(value).removeprefix("EPOCH_STATE_")  # type: ignore[arg-type]
    try:
        return EpochState(name)
    except ValueError:
        raise TokenweaveError(
            f"an epoch state this SDK does not know ({name}); upgrade it"
        ) from None


def _time(message: rewards_pb2.Epoch, name: str) -> dt.datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    value: dt.datetime = getattr(message, name).ToDatetime(tzinfo=dt.UTC)
    return value


def chain_info(chain: rewards_pb2.Chain) -> ChainInfo:
    return ChainInfo(chain.chain_id, chain.endpoint, chain.token, chain.distributor)


def epoch_info(e: rewards_pb2.Epoch) -> EpochInfo:
    return EpochInfo(
        epoch=e.epoch,
        state=_state(e.state),
        root=e.root,
        operators=e.operators,
        tokens=e.tokens,
        amount=e.amount,
        tx_hash=e.tx_hash,
        closed_at=_time(e, "closed_at"),
        settled_at=_time(e, "settled_at"),
        attempts=e.attempts,
        last_error=e.last_error,
    )


def operator_rewards(r: rewards_pb2.GetRewardsResponse) -> OperatorRewards:
    return OperatorRewards(
        address=r.address,
        tokens=r.tokens,
        earned=r.earned,
        unsettled=r.unsettled,
        claimed=r.claimed,
        claimable=r.claimable,
        balance=r.balance,
        epochs=tuple(
            EpochEarning(e.epoch, _state(e.state), e.tokens, e.earned, e.cumulative)
            for e in r.epochs
        ),
    )


def signed_claim(ticket: rewards_pb2.GetClaimResponse, private_key: bytes) -> tuple[bytes, int]:
    """The claim transaction for the ticket, signed with the operator's key; (raw, amount)."""
    from eth_account import Account  # slow imports: only a claim needs them
    from web3 import Web3

    account = Account.from_key(private_key)
    cumulative, claimed = int(ticket.cumulative_wei), int(ticket.claimed_wei)
    if cumulative <= claimed:
        raise FailedPreconditionError(
            f"{account.address} has nothing to claim: epoch {ticket.epoch} owes it "
            f"{cumulative} wei in all and it has been paid {claimed}"
        )
    distributor = Web3().eth.contract(
        address=Web3.to_checksum_address(ticket.chain.distributor),
        abi=load_artifact("RewardDistributor").abi,
    )
    data = distributor.encode_abi("claim", args=[account.address, cumulative, list(ticket.proof)])
    tx = {
        "to": distributor.address,
        "data": data,
        "value": 0,
        "nonce": ticket.nonce,
        "gas": CLAIM_GAS,
        "gasPrice": int(ticket.gas_price_wei),
        "chainId": ticket.chain.chain_id,
    }
    return bytes(account.sign_transaction(tx).raw_transaction), cumulative - claimed
