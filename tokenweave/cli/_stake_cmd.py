"""`tokenweave node stake AMOUNT`, `node unstake AMOUNT`, `node withdraw`.

The node's key (in its data dir) signs each call to the NodeStaking contract here, and the
coordinator relays it, as it relays claims: a stake approves the staking contract for AMOUNT,
then stakes it; an unstake starts the unbonding delay; a withdraw pays back what has unbonded.
The staking contract's address follows from the distributor's (`staking_address`).

Parsing needs only the standard library (`add_stake_commands`); the rest is imported when a
command runs.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from tokenweave.errors import FailedPreconditionError, InvalidArgumentError

if TYPE_CHECKING:
    from tokenweave.client import Client

#: The node subcommands this module runs, with their help.
ACTIONS = {
    "stake": "stake AMOUNT TWV of this node's tokens (approve, then stake)",
    "unstake": "start unbonding AMOUNT TWV of this node's stake",
    "withdraw": "withdraw this node's stake once its unbonding delay has passed",
}
WEI_PER_TOKEN = 10**18


def add_stake_commands(
    nodes: Any, add_node_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add `stake`, `unstake` and `withdraw` to the `node` subcommands (`add_node_options`:
    the data dir, --json and client options they share with `node`)."""
    for action, text in ACTIONS.items():
        p = nodes.add_parser(action, help=text)
        if action != "withdraw":
            p.add_argument("amount", metavar="AMOUNT", help="in TWV, e.g. 2.5")
        add_node_options(p)


def parse_amount(text: str) -> int:
    """TWV as a decimal string → wei; positive, at most 18 decimals."""
    try:
        value = Decimal(text) * WEI_PER_TOKEN
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value <= 0 or value != value.to_integral_value():
        raise InvalidArgumentError(
            f"{text!r} is not a positive amount of TWV (at most 18 decimals)"
        )
    return int(value)


def run(client: Client, args: argparse.Namespace) -> int:
    """Sign and relay the calls of `args.node_command`; prints what was sent."""
    from tokenweave.node import NodeIdentity  # the node package loads ONNX Runtime: only here

    action = args.node_command
    amount = parse_amount(args.amount) if action != "withdraw" else 0
    identity = NodeIdentity.load(args.data_dir)
    sent = relay_staking(client, identity.private_key, action, amount)
    if args.json:
        json.dump(
            {"action": action, "address": identity.address, "amount_wei": amount, **sent},
            sys.stdout,
        )
        sys.stdout.write("\n")
        return 0
    what = f"{action} {amount / WEI_PER_TOKEN:.6f} TWV" if amount else action
    print(f"{identity.address}: {what} (tx {sent['tx_hash']}, {sent['gas_used']:,} gas)")
    return 0


def relay_staking(client: Client, private_key: bytes, action: str, amount: int) -> dict[str, Any]:
    """Sign each call of `action` with `private_key` and have the coordinator relay it, in
    order; the last call's transaction hash and the gas of them all."""
    from eth_account import Account  # slow imports: only staking needs them

    from tokenweave.contracts._staking import staking_calls
    from tokenweave.v1 import rewards_pb2

    account = Account.from_key(private_key)
    stub = client._rewards  # the Client has no staking calls yet; its RewardsService stub
    _, chain = client.epochs()
    tx_hash, gas_used = "", 0
    for call in staking_calls(action, chain.token, chain.distributor, amount):
        # GetClaim gives the next nonce and the gas price (and tops up gas on a dev chain).
        ticket = client._call(
            lambda: stub.GetClaim(
                rewards_pb2.GetClaimRequest(address=account.address), timeout=client.timeout
            )
        )
        tx = {
            "to": call.to,
            "data": call.data,
            "value": 0,
            "nonce": ticket.nonce,
            "gas": call.gas,
            "gasPrice": int(ticket.gas_price_wei),
            "chainId": ticket.chain.chain_id,
        }
        raw = bytes(account.sign_transaction(tx).raw_transaction)
        response = client._call(
            functools.partial(
                stub.SendTransaction,
                rewards_pb2.SendTransactionRequest(raw_transaction=raw),
                timeout=client.timeout,
            )
        )
        if not response.success:
            raise FailedPreconditionError(
                f"{action} of {account.address} reverted: "
                + (response.revert_reason or "no reason given")
            )
        tx_hash, gas_used = response.tx_hash, gas_used + response.gas_used
    return {"tx_hash": tx_hash, "gas_used": gas_used}
