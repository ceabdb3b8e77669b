"""`tokenweave rewards`, `tokenweave epoch close`, `tokenweave node claim`."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from tokenweave.cli._ids import resolve
from tokenweave.client import Client, EpochInfo
from tokenweave.errors import NotFoundError, UnavailableError

console = Console(stderr=True)
out = Console()


def _dump(value: Any) -> None:
    json.dump(value, sys.stdout, default=str)
    sys.stdout.write("\n")


def show_rewards(client: Client, address: str | None, as_json: bool) -> int:
    if address is None:
        return show_epochs(client, as_json)
    if not (address.startswith("0x") and len(address) == 42):  # a prefix of a node's address
        address = resolve(address, (n.address for n in client.nodes()), "node address")
    rewards = client.rewards(address)
    if as_json:
        _dump(asdict(rewards))
        return 0
    out.print(
        f"[bold]{rewards.address}[/]: {rewards.tokens:,} model tokens of verified work\n"
        f"earned {rewards.earned} TWV ({rewards.unsettled} not yet in an epoch), "
        f"claimed {rewards.claimed}, claimable {rewards.claimable}, balance {rewards.balance}"
    )
    table = Table("epoch", "state", "tokens", "earned", "cumulative", title="earnings per epoch")
    for e in rewards.epochs:
        table.add_row(str(e.epoch), e.state, f"{e.tokens:,}", e.earned, e.cumulative)
    out.print(table)
    return 0


def show_epochs(client: Client, as_json: bool) -> int:
    epochs, chain = client.epochs()
    if as_json:
        _dump({"chain": asdict(chain), "epochs": [asdict(e) for e in epochs]})
        return 0
    out.print(
        f"chain {chain.chain_id} ({chain.endpoint}): token {chain.token}, "
        f"distributor {chain.distributor}"
    )
    table = Table("epoch", "state", "operators", "tokens", "TWV", "root", "tx", "note")
    for e in epochs:
        table.add_row(
            str(e.epoch),
            e.state,
            str(e.operators),
            f"{e.tokens:,}",
            e.amount,
            e.root[:18] + "…",
            (e.tx_hash[:18] + "…") if e.tx_hash else "",
            e.last_error,
        )
    out.print(table)
    return 0


def wait_settled(client: Client, epoch: int, timeout: float = 120.0) -> EpochInfo:
    deadline = time.monotonic() + timeout
    while True:
        epochs, _ = client.epochs()
        current = next((e for e in epochs if e.epoch == epoch), None)
        if current is None:
            raise NotFoundError(f"epoch {epoch} is gone")
        if current.state == "SETTLED":
            return current
        if time.monotonic() > deadline:
            raise UnavailableError(
                f"epoch {epoch} is still {current.state} after {timeout:.0f} s"
                + (f" ({current.last_error})" if current.last_error else "")
            )
        time.sleep(0.2)


def close_epoch(client: Client, wait: bool, as_json: bool) -> int:
    epoch = client.close_epoch()
    if epoch is None:
        console.print("nothing was earned since the last epoch; no epoch closed")
        return 0
    if wait:
        with console.status(f"epoch {epoch.epoch}: posting the root and waiting for confirmations"):
            epoch = wait_settled(client, epoch.epoch)
    if as_json:
        _dump(asdict(epoch))
    else:
        out.print(
            f"epoch {epoch.epoch} {epoch.state}: {epoch.operators} operators, "
            f"{epoch.tokens:,} tokens, {epoch.amount} TWV, root {epoch.root}"
            + (f", tx {epoch.tx_hash}" if epoch.tx_hash else "")
        )
    return 0


def claim(client: Client, data_dir: Path, as_json: bool) -> int:
    from tokenweave.node import NodeIdentity  # the node package loads ONNX Runtime: only here

    identity = NodeIdentity.load(data_dir)
    result = client.claim(identity.private_key)
    balance = client.rewards(identity.address).balance
    if as_json:
        _dump({**asdict(result), "address": identity.address, "balance": balance})
        return 0
    out.print(
        f"claimed {result.amount_wei / 10**18:.6f} TWV for {identity.address} "
        f"(epoch {result.epoch}, tx {result.tx_hash}, {result.gas_used:,} gas); "
        f"balance now {balance} TWV"
    )
    return 0
