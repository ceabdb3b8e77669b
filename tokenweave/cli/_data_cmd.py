"""`tokenweave data put|get|ls|status`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

from tokenweave.client import Client
from tokenweave.client._data import download
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
    console.print(
        f"{result.blocks} blocks, {result.bytes:,} bytes, at least {result.min_replicas} replicas"
    )
    print(result.root)
    return 0


def get(client: Client, cid: str, destination: Path) -> int:
    """Write the dataset at `destination`: never more bytes than it was recorded with (when it is
    a dataset on record) nor than its DAG declares; on any error, nothing is written."""
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


def ls(client: Client, as_json: bool) -> int:
    datasets = client.datasets()
    if as_json:
        json.dump([asdict(d) for d in datasets], sys.stdout)
        sys.stdout.write("\n")
        return 0
    table = Table("name", "bytes", "blocks", "root")
    table.columns[3].overflow = "fold"
    for d in datasets:
        table.add_row(d.name, f"{d.size:,}", str(d.blocks), d.root)
    out.print(table)
    return 0


def status(client: Client, cid: str, as_json: bool) -> int:
    info, blocks = client.dataset_status(cid)
    if as_json:
        json.dump({**asdict(info), "blocks": [asdict(b) for b in blocks]}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    out.print(f"{info.root} {info.name!r}: {info.size:,} bytes in {info.blocks} blocks")
    table = Table("block", "replicas", "nodes", "offline")
    for b in blocks:
        table.add_row(
            b.cid,
            str(b.replicas),
            ", ".join(n[:10] + "…" for n in b.node_ids),
            ", ".join(n[:10] + "…" for n in b.offline_node_ids),
        )
    out.print(table)
    return 0
