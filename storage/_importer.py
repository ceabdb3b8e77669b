"""Files → UnixFS DAGs in the balanced layout, with the CIDs IPFS's own importer gives.

Fixed-size chunks become raw leaf blocks; leaves are grouped, in order, `max_links` at a time
under dag-pb File nodes, and those again, until one root remains. A file of one chunk is its own
root (a raw block). `PROFILES` holds IPIP-499's `unixfs-v1-2025` (1 MiB chunks, 1024 links, the
default) and `kubo` (256 KiB, 174 links: `ipfs add --cid-version=1 --raw-leaves`); `fastcdc`
chunks by content instead, for datasets that change often (not IPFS-identical).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pyfastcdc import FastCDC

from tokenweave.errors import InvalidArgumentError, clip
from tokenweave.storage._blockstore import MAX_BLOCK_BYTES
from tokenweave.storage._cid import CID, DAG_PB, RAW
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    PBLink,
    encode_node,
    unixfs_data,
)


@dataclass(frozen=True, slots=True)
class ImportProfile:
    name: str
    #: Fixed chunk size; with content-defined chunking, the average.
    chunk_size: int
    max_links: int
    #: Content-defined chunking (FastCDC): an insertion moves only nearby chunk boundaries, so
    #: versions of a dataset share most blocks. Not IPFS-identical: Kubo and Helia chunk fixed.
    content_defined: bool = False

    def __post_init__(self) -> None:
        if self.chunk_size < 1 or self.max_links < 2:
            raise InvalidArgumentError(
                f"profile {self.name!r}: chunk_size must be ≥ 1 and max_links ≥ 2"
            )
        if self.content_defined and not 256 <= self.chunk_size <= MAX_BLOCK_BYTES // 4:
            raise InvalidArgumentError(
                f"profile {self.name!r}: a content-defined average chunk must be 256 bytes to "
                f"{MAX_BLOCK_BYTES // 4} (chunks reach 4x the average)"
            )


PROFILES = {
    p.name: p
    for p in (
        ImportProfile("unixfs-v1-2025", chunk_size=1 << 20, max_links=1024),
        ImportProfile("kubo", chunk_size=256 << 10, max_links=174),
        ImportProfile("fastcdc", chunk_size=256 << 10, max_links=174, content_defined=True),
    )
}
DEFAULT_PROFILE = PROFILES["unixfs-v1-2025"]


def profile_named(name: str) -> ImportProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidArgumentError(
            f"unknown profile {name!r}; choose one of {', '.join(sorted(PROFILES))}"
        ) from None


@dataclass(frozen=True, slots=True)
class Block:
    cid: CID
    data: bytes


@dataclass(frozen=True, slots=True)
class DagNode:
    """A node's identity and sizes: `tsize` counts its block and everything below it."""

    cid: CID
    tsize: int
    filesize: int


BlockSink = Callable[[Block], None]


def chunks(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """Fixed-size chunks; an empty stream is one empty chunk (the empty file's raw block)."""
    first = True
    while True:
        chunk = stream.read(size)
        if not chunk and not first:
            return
        yield chunk
        first = False
        if len(chunk) < size:
            return


def content_defined_chunks(stream: BinaryIO, average: int) -> Iterator[bytes]:
    """FastCDC chunks between average/4 and average*4 bytes."""
    cdc = FastCDC(avg_size=average, min_size=average // 4, max_size=average * 4)
    empty = True
    for chunk in cdc.cut_stream(stream):
        empty = False
        yield bytes(chunk.data)
    if empty:
        yield b""


def _parent(children: Sequence[DagNode], sink: BlockSink) -> DagNode:
    filesize = sum(c.filesize for c in children)
    data = unixfs_data(UNIXFS_FILE, filesize=filesize, blocksizes=[c.filesize for c in children])
    block = encode_node([PBLink(c.cid, "", c.tsize) for c in children], data)
    cid = CID.of(DAG_PB, block)
    sink(Block(cid, block))
    return DagNode(cid, len(block) + sum(c.tsize for c in children), filesize)


def import_file(
    stream: BinaryIO, sink: BlockSink, profile: ImportProfile = DEFAULT_PROFILE
) -> DagNode:
    """Chunk `stream`, hand every block to `sink` (leaves first), and return the root."""
    level: list[DagNode] = []
    source = (
        content_defined_chunks(stream, profile.chunk_size)
        if profile.content_defined
        else chunks(stream, profile.chunk_size)
    )
    for chunk in source:
        cid = CID.of(RAW, chunk)
        sink(Block(cid, chunk))
        level.append(DagNode(cid, len(chunk), len(chunk)))
    if len(level) == 1:
        return level[0]
    while True:
        level = [
            _parent(level[i : i + profile.max_links], sink)
            for i in range(0, len(level), profile.max_links)
        ]
        if len(level) == 1:
            return level[0]


#: Longest entry name, in UTF-8 bytes (the limit of ext4, XFS, btrfs, APFS and NTFS).
MAX_ENTRY_NAME_BYTES = 255


def check_entry_name(name: str) -> str:
    """A directory entry name that cannot escape its directory, or InvalidArgumentError."""
    if name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InvalidArgumentError(f"directory entry name {clip(name, 300)} is not allowed")
    try:
        size = len(name.encode())
    except UnicodeEncodeError:  # a file name on disk that is not UTF-8 (surrogate escapes)
        raise InvalidArgumentError(f"directory entry name {clip(name)} is not UTF-8") from None
    if size > MAX_ENTRY_NAME_BYTES:
        raise InvalidArgumentError(
            f"directory entry name {clip(name)} is {size} bytes; names are at most "
            f"{MAX_ENTRY_NAME_BYTES}"
        )
    return name


def import_directory(
    root: Path, sink: BlockSink, profile: ImportProfile = DEFAULT_PROFILE
) -> DagNode:
    """A folder as a UnixFS directory DAG; links are sorted by name bytes, as dag-pb requires.

    Symbolic links and special files are refused rather than followed.
    """
    children: list[tuple[bytes, str, DagNode]] = []
    for entry in root.iterdir():
        name = check_entry_name(entry.name)
        if entry.is_symlink():
            raise InvalidArgumentError(f"{entry} is a symbolic link; links are not imported")
        if entry.is_dir():
            node = import_directory(entry, sink, profile)
        elif entry.is_file():
            with entry.open("rb") as f:
                node = import_file(f, sink, profile)
        else:
            raise InvalidArgumentError(f"{entry} is not a regular file or directory")
        children.append((name.encode(), name, node))
    children.sort(key=lambda c: c[0])
    block = encode_node(
        [PBLink(node.cid, name, node.tsize) for _, name, node in children],
        unixfs_data(UNIXFS_DIRECTORY),
    )
    cid = CID.of(DAG_PB, block)
    sink(Block(cid, block))
    return DagNode(
        cid,
        len(block) + sum(n.tsize for _, _, n in children),
        sum(n.filesize for _, _, n in children),
    )
