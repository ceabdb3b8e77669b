"""Signed transactions read back: who sent them and what they ask, before anything is sent."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account._utils.legacy_transactions import Transaction
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

from tokenweave.errors import InvalidArgumentError


@dataclass(frozen=True, slots=True)
class RawTransaction:
    raw: bytes
    sender: str
    nonce: int
    #: The called address; "" for a contract creation.
    to: str
    data: bytes
    value: int
    gas: int
    #: The most it pays per gas: gasPrice, or maxFeePerGas of a typed transaction.
    max_fee: int
    #: None for a legacy transaction signed without replay protection.
    chain_id: int | None


def decode_raw_transaction(raw: bytes) -> RawTransaction:
    """The fields and sender of a signed transaction (legacy or typed); `InvalidArgumentError`
    when `raw` is not one."""
    try:
        sender = str(Account.recover_transaction(raw))
        if raw and raw[0] <= 0x7F:
            fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
            chain_id: int | None = int(fields["chainId"])
        else:
            legacy = Transaction.from_bytes(raw)
            fields = legacy.as_dict()
            v = int(fields["v"])
            chain_id = (v - 35) // 2 if v >= 35 else None
        to = bytes(fields.get("to") or b"")
    except Exception as exc:
        raise InvalidArgumentError(f"not a signed transaction: {exc}") from exc
    return RawTransaction(
        raw=bytes(raw),
        sender=sender,
        nonce=int(fields["nonce"]),
        to=to_checksum_address(to) if to else "",
        data=bytes(fields.get("data") or b""),
        value=int(fields.get("value") or 0),
        gas=int(fields["gas"]),
        max_fee=int(fields.get("maxFeePerGas", fields.get("gasPrice")) or 0),
        chain_id=chain_id,
    )
