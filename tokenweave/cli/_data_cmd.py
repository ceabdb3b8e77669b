"""`tokenweave data put|get|ls|status`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from tokenweave.cli._ids import resolve, short
from tokenweave.client import Client
from tokenweave.client._data import PutResult, download
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError

console = Console(stderr=True)
out = Console()


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def transfer_bar(disable: bool = False) -> Progress:
    """A transfer bar on stderr: bytes, total and rate."""
    return Progress(
        "[bold]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=console, disable=disable,
    )  # fmt: skip


def put(client: Client, path: Path, profile: str, as_json: bool) -> int:
    if not path.exists():
        raise InvalidArgumentError(f"{path}: no such file or directory")
    with transfer_bar(disable=as_json) as progress:
        task = progress.add_task(f"put {path.name}", total=_size(path))
        result = client.put(path, profile=profile, progress=lambda n: progress.advance(task, n))
    if as_json:
        json.dump({"cid": result.root, **asdict(result)}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    console.print(f"{result.blocks} blocks, {result.bytes:,} bytes, {_replicas(result)}")
    if result.min_replicas < result.target_replicas:
        console.print(
            f"[yellow]warning:[/] under-replicated: some blocks have {result.min_replicas} "
            f"copies of the {result.target_replicas} the coordinator keeps (fewer nodes are "
            "online); it copies them as nodes join (`tokenweave data status` shows each block)"
        )
    print(result.root)
    return 0


def _replicas(result: PutResult) -> str:
    if not result.target_replicas:  # a coordinator that does not say
        return f"at least {result.min_replicas} replicas"
    return f"{result.min_replicas} of {result.target_replicas} replicas at least"


def dataset_cid(client: Client, given: str) -> str:
    """The root CID `given` starts (a unique prefix of a dataset's root on record), or `given`
    itself when no dataset's root starts with it (a block's CID, say)."""
    try:
        return resolve(given, (d.root for d in client.datasets()), "dataset root")
    except NotFoundError:
        return given


def get(client: Client, cid: str, destination: Path) -> int:
    """Write the dataset at `destination`: never more bytes than it was recorded with (when it is
    a dataset on record) nor than its DAG declares; on any error, nothing is written."""
    cid = dataset_cid(client, cid)
    try:
        total: int | None = client.dataset_status(cid)[0].size
    except NotFoundError:  # a block inside a dataset, or a DAG stored some other way
        total = None
    with transfer_bar() as progress:
        task = progress.add_task(f"get {cid[:16]}…", total=total)
        try:
            download(
                cid,
                destination,
                client.providers,
                progress=lambda n: progress.advance(task, n),
                max_file_bytes=total,
            )
        except OSError as exc:
            raise FailedPreconditionError(f"cannot write {destination}: {exc}") from exc
    console.print(f"wrote {destination}")
    return 0


def ls(client: Client, as_json: bool, wide: bool = False) -> int:
    datasets = client.datasets()
    if as_json:
        json.dump([asdict(d) for d in datasets], sys.stdout)
        sys.stdout.write("\n")
        return 0
    table = Table("root", "name", "bytes", "blocks")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(d.root) for d in datasets), default=0) if wide else None
    for d in datasets:
        table.add_row(short(d.root, "cid", wide), d.name, f"{d.size:,}", str(d.blocks))
    out.print(table)
    return 0


def status(client: Client, cid: str, as_json: bool, wide: bool = False) -> int:
    info, blocks = client.dataset_status(dataset_cid(client, cid))
    if as_json:
        json.dump({**asdict(info), "blocks": [asdict(b) for b in blocks]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    out.print(f"{info.root} {info.name!r}: {info.size:,} bytes in {info.blocks} blocks")
    target = info.target_replicas
    table = Table("block", "replicas", "target", "nodes", "offline")
    table.columns[0].no_wrap = True
    table.columns[0].min_width = max((len(b.cid) for b in blocks), default=0) if wide else None
    under = 0
    for b in blocks:
        low = bool(target) and b.replicas < target
        under += low
        table.add_row(
            short(b.cid, "cid", wide),
            f"[yellow]{b.replicas}[/]" if low else str(b.replicas),
            str(target or "?"),
            ", ".join(short(n, "node", wide) for n in b.node_ids),
            ", ".join(short(n, "node", wide) for n in b.offline_node_ids),
        )
    out.print(table)
    if under:
        console.print(
            f"[yellow]warning:[/] {under} of {len(blocks)} blocks have fewer than {target} "
            "copies online; the coordinator copies them as nodes join"
        )
    return 0
