"""Reading UnixFS DAGs back: file bytes by CID, and whole trees written safely to disk.

Every block read is checked against the size its parent declares, so a read yields exactly the
bytes the DAG declares. `export` measures the DAG first (`measure_dag`: limits, declarations,
entry names) and writes nothing until it passed; it then writes into a staging folder beside the
destination and renames it into place at the end, so a failure leaves no partial output.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, ResourceExhaustedError
from tokenweave.storage._cid import CID, DAG_PB, RAW
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    MalformedNodeError,
    blocksizes,
    decode_node,
)
from tokenweave.storage._dagshape import BlockSource, DagLimits, DagShape, measure_dag
from tokenweave.storage._importer import check_entry_name

__all__ = ["EXPORT_LIMITS", "BlockSource", "export", "read_file"]

#: What `export` accepts unless told otherwise: 64 GiB, a million links.
EXPORT_LIMITS = DagLimits(max_bytes=64 << 30, max_links=1_000_000)

#: Interior blocks kept between measuring a DAG and writing it, so they are fetched once.
_INTERIOR_CACHE_BYTES = 64 << 20


def file_leaves(cid: CID, source: BlockSource) -> list[CID]:
    """The raw leaves of a file's DAG in order, reading only its interior blocks (to fetch the
    leaves in parallel before `read_file` walks them)."""
    if cid.codec == RAW:
        return [cid]
    try:
        node = decode_node(source(cid))
    except (MalformedNodeError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"block {cid} is not a UnixFS node: {exc}") from exc
    return [leaf for link in node.links for leaf in file_leaves(link.cid, source)]


def read_file(cid: CID, source: BlockSource, size: int | None = None) -> Iterator[bytes]:
    """The file's bytes, leaf by leaf, in order.

    Each block must hold what its parent declares (`blocksizes`; `size` for the root when the
    caller knows it), and each node's `filesize` must add up: a block that disagrees is an
    InvalidArgumentError, raised before any of its bytes are yielded.
    """
    block = source(cid)
    if cid.codec == RAW:
        if size is not None and len(block) != size:
            raise InvalidArgumentError(
                f"block {cid} holds {len(block):,} bytes but {size:,} were declared for it"
            )
        if block:
            yield block
        return
    try:
        node = decode_node(block)
    except (MalformedNodeError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"block {cid} is not a UnixFS node: {exc}") from exc
    if node.kind != UNIXFS_FILE:
        raise InvalidArgumentError(f"{cid} is not a file")
    sizes = blocksizes(block)
    if len(sizes) != len(node.links):
        raise InvalidArgumentError(
            f"file node {cid} has {len(node.links)} links but {len(sizes)} blocksizes"
        )
    content = len(node.data) + sum(sizes)
    if node.filesize != content or (size is not None and content != size):
        declared = node.filesize if size is None or node.filesize != content else size
        raise InvalidArgumentError(
            f"file node {cid} holds {content:,} bytes but {declared:,} were declared for it"
        )
    if node.data:
        yield node.data
    for link, child_size in zip(node.links, sizes, strict=True):
        yield from read_file(link.cid, source, child_size)


class _InteriorCache:
    """`source`, remembering dag-pb blocks up to a budget (raw leaves are read once anyway)."""

    def __init__(self, source: BlockSource) -> None:
        self._source = source
        self._blocks: dict[CID, bytes] = {}
        self._bytes = 0

    def __call__(self, cid: CID) -> bytes:
        data = self._blocks.get(cid)
        if data is None:
            data = self._source(cid)
            if cid.codec == DAG_PB and self._bytes + len(data) <= _INTERIOR_CACHE_BYTES:
                self._blocks[cid] = data
                self._bytes += len(data)
        return data


def _existing_ancestor(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def export(
    cid: CID,
    source: BlockSource,
    destination: Path,
    limits: DagLimits = EXPORT_LIMITS,
    max_file_bytes: int | None = None,
) -> DagShape:
    """Write the file or directory `cid` at `destination`, which must not exist yet.

    The DAG is measured first: it must keep within `limits`, hold at most `max_file_bytes` of
    file contents when given, fit on the disk, and have only safe entry names (no `../x`, `/etc`,
    over-long or duplicate names) — or nothing is written. Returns the shape it measured.
    """
    if destination.exists() or destination.is_symlink():
        raise InvalidArgumentError(f"{destination} already exists")
    cached = _InteriorCache(source)
    shape = measure_dag(cid, cached, limits)
    if max_file_bytes is not None and shape.file_bytes > max_file_bytes:
        raise InvalidArgumentError(
            f"DAG {cid} expands to {shape.file_bytes:,} bytes of files, more than the "
            f"{max_file_bytes:,} expected; refused before writing"
        )
    free = shutil.disk_usage(_existing_ancestor(destination.parent)).free
    if shape.file_bytes > free:
        raise ResourceExhaustedError(
            f"DAG {cid} holds {shape.file_bytes:,} bytes; {destination.parent} has {free:,} free"
        )
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".tokenweave-get-", dir=destination.parent))
    except OSError as exc:
        raise FailedPreconditionError(f"cannot write in {destination.parent}: {exc}") from exc
    try:
        _write(cid, cached, staging / "out", None, cid.codec == RAW, destination.name)
        if destination.exists() or destination.is_symlink():
            raise InvalidArgumentError(f"{destination} already exists")
        os.rename(staging / "out", destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return shape


def _write(
    cid: CID, source: BlockSource, path: Path, size: int | None, raw: bool, entry: str
) -> None:
    """`cid` at `path`; `entry` names it in errors (its path below the destination's name)."""
    try:
        if not raw:
            block = source(cid)
            node = decode_node(block)
            if node.kind == UNIXFS_DIRECTORY:
                path.mkdir()
                for link in node.links:
                    name = check_entry_name(link.name)
                    raw_child = link.cid.codec == RAW
                    _write(
                        link.cid,
                        source,
                        path / name,
                        link.tsize if raw_child else None,
                        raw_child,
                        f"{entry}/{name}",
                    )
                return
        with path.open("wb") as f:
            for chunk in read_file(cid, source, size):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except MalformedNodeError as exc:
        raise InvalidArgumentError(f"block {cid} is not a UnixFS node: {exc}") from exc
    except OSError as exc:
        raise FailedPreconditionError(
            f"could not write entry {entry!r}: {exc.strerror or exc}"
        ) from exc
