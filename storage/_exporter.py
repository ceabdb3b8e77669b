"""Reading UnixFS DAGs back: file bytes by CID, and whole trees written safely to disk."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from tokenweave.errors import InvalidArgumentError
from tokenweave.storage._cid import CID, DAG_PB, RAW
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    MalformedNodeError,
    decode_node,
)
from tokenweave.storage._importer import check_entry_name

#: Fetches a block's verified bytes (a BlockStore's `get`, or a peer fetch).
BlockSource = Callable[[CID], bytes]


def _node(cid: CID, source: BlockSource) -> tuple[int, bytes, list[tuple[str, CID]]]:
    block = source(cid)
    if cid.codec == RAW:
        return UNIXFS_FILE, block, []
    try:
        node = decode_node(block)
    except (MalformedNodeError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"block {cid} is not a UnixFS node: {exc}") from exc
    return node.kind, node.data, [(link.name, link.cid) for link in node.links]


def read_file(cid: CID, source: BlockSource) -> Iterator[bytes]:
    """The file's bytes, leaf by leaf, in order."""
    kind, data, links = _node(cid, source)
    if kind != UNIXFS_FILE:
        raise InvalidArgumentError(f"{cid} is not a file")
    if data:
        yield data
    for _, child in links:
        yield from read_file(child, source)


def export(cid: CID, source: BlockSource, destination: Path) -> None:
    """Write the file or directory `cid` at `destination`, which must not exist yet.

    Entry names are checked before use, so a DAG naming `../x` or `/etc` cannot write outside
    `destination`; a file is written to a temporary name first and renamed when complete.
    """
    if destination.exists():
        raise InvalidArgumentError(f"{destination} already exists")
    kind = UNIXFS_FILE if cid.codec == RAW else _node(cid, source)[0]
    if kind == UNIXFS_DIRECTORY:
        entries = [(check_entry_name(name), child) for name, child in _node(cid, source)[2]]
        destination.mkdir(parents=True)
        for name, child in entries:
            export(child, source, destination / name)
        return
    if kind != UNIXFS_FILE:
        raise InvalidArgumentError(f"{cid} is neither a file nor a directory")
    if cid.codec != RAW and cid.codec != DAG_PB:
        raise InvalidArgumentError(f"{cid} has an unsupported codec")
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        with partial.open("wb") as f:
            for chunk in read_file(cid, source):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
