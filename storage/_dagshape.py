"""`measure_dag`: a DAG's expanded size and links, checked against `DagLimits` before reading it.

Content addressing lets one block be linked many times: a 1 MiB leaf linked 1,000 times by a
node that is itself linked 1,000 times describes 1 TB in 1.1 MiB of blocks. `measure_dag` walks
the dag-pb nodes only (each fetched once; raw leaves are not fetched), adds up what a full read
would fetch with every link counted as often as it is reached, and stops with an
InvalidArgumentError naming the limit as soon as the expanded size, the links, the depth or one
node's fan-out passes it.

It also checks what the nodes declare against what the blocks hold: a File node's `filesize`
against its data and `blocksizes`, each link's Tsize against the block and everything below it,
each child's byte count against its parent's `blocksizes`. Directory entry names are checked as
the exporter will use them (no separators, `..`, over-long or duplicate names). A raw leaf's size
is the one thing taken on trust here: readers (`read_file`) check each leaf against it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tokenweave.errors import InvalidArgumentError
from tokenweave.storage._cid import CID, RAW
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    DecodedNode,
    MalformedNodeError,
    blocksizes,
    decode_node,
)
from tokenweave.storage._importer import check_entry_name

#: Fetches a block's verified bytes (a BlockStore's `get`, or a peer fetch).
BlockSource = Callable[[CID], bytes]

#: The deepest DAG any limit may allow: walks and reads recurse once per level.
MAX_DEPTH = 256

#: Which files of a directory are read (by entry name); the others are neither walked nor counted.
EntryFilter = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class DagLimits:
    #: Bytes of the blocks a full read fetches, each counted as often as it is reached.
    max_bytes: int = 1 << 30
    #: Links reached, counted the same way.
    max_links: int = 100_000
    #: Levels of nodes below the root.
    max_depth: int = 32
    #: Links of one node.
    max_fanout: int = 16_384

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_links, self.max_depth, self.max_fanout) < 1:
            raise InvalidArgumentError(f"DAG limits must be positive: {self}")
        if self.max_depth > MAX_DEPTH:
            raise InvalidArgumentError(
                f"a DAG depth limit is at most {MAX_DEPTH} (readers recurse)"
            )


@dataclass(frozen=True, slots=True)
class DagShape:
    """A DAG as a full read sees it; links reached twice count twice."""

    #: Bytes of the blocks read (what the root's Tsize declares, less files filtered out).
    bytes: int
    #: Bytes of file contents: what an export writes.
    file_bytes: int
    links: int
    #: Levels of nodes below the root.
    depth: int
    #: Sum of the blocks below and including the root, as a Tsize would declare it.
    tsize: int
    is_directory: bool = False


def _decode(cid: CID, block: bytes) -> DecodedNode:
    try:
        return decode_node(block)
    except (MalformedNodeError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"block {cid} is not a UnixFS node: {exc}") from exc


def _leaf(size: int, read: bool = True) -> DagShape:
    return DagShape(size if read else 0, size if read else 0, 0, 0, size)


class _Walk:
    def __init__(
        self, root: CID, source: BlockSource, limits: DagLimits, include: EntryFilter | None
    ) -> None:
        self._root = root
        self._source = source
        self._limits = limits
        self._include = include
        self._seen: dict[CID, DagShape] = {}

    def _check(self, shape: DagShape, depth: int) -> None:
        limits, root = self._limits, self._root
        if shape.bytes > limits.max_bytes:
            raise InvalidArgumentError(
                f"DAG {root} expands to more than {limits.max_bytes:,} bytes (the expanded-size "
                "limit); refused before reading"
            )
        if shape.links > limits.max_links:
            raise InvalidArgumentError(
                f"DAG {root} reaches more than {limits.max_links:,} links (the link-count "
                "limit); refused before reading"
            )
        self._check_depth(depth + shape.depth)

    def _check_depth(self, levels: int) -> None:
        if levels > self._limits.max_depth:
            raise InvalidArgumentError(
                f"DAG {self._root} is more than {self._limits.max_depth} levels deep (the depth "
                "limit)"
            )

    def node(self, cid: CID, depth: int, block: bytes | None = None) -> DagShape:
        """The shape of dag-pb node `cid`, reached `depth` levels below the root."""
        known = self._seen.get(cid)
        if known is not None:
            self._check_depth(depth + known.depth)
            return known
        self._check_depth(depth)
        if block is None:
            block = self._source(cid)
        node = _decode(cid, block)
        if len(node.links) > self._limits.max_fanout:
            raise InvalidArgumentError(
                f"node {cid} has {len(node.links):,} links; the fan-out limit is "
                f"{self._limits.max_fanout:,}"
            )
        if node.kind == UNIXFS_FILE:
            shape = self._file(cid, block, node, depth)
        elif node.kind == UNIXFS_DIRECTORY:
            shape = self._directory(cid, block, node, depth)
        else:
            raise InvalidArgumentError(
                f"node {cid} is UnixFS type {node.kind}; only files and directories are read"
            )
        self._seen[cid] = shape
        return shape

    def _add(self, total: DagShape, child: DagShape, depth: int) -> DagShape:
        shape = DagShape(
            total.bytes + child.bytes,
            total.file_bytes + child.file_bytes,
            total.links + child.links,
            max(total.depth, child.depth + 1),
            total.tsize + child.tsize,
            total.is_directory,
        )
        self._check(shape, depth)
        return shape

    def _file(self, cid: CID, block: bytes, node: DecodedNode, depth: int) -> DagShape:
        sizes = blocksizes(block)
        if len(sizes) != len(node.links):
            raise InvalidArgumentError(
                f"file node {cid} has {len(node.links)} links but {len(sizes)} blocksizes"
            )
        content = len(node.data) + sum(sizes)
        if node.filesize != content:
            raise InvalidArgumentError(
                f"file node {cid} declares {node.filesize:,} bytes but its data and blocksizes "
                f"add up to {content:,}"
            )
        total = DagShape(len(block), len(node.data), len(node.links), 0, len(block))
        self._check(total, depth)
        for link, size in zip(node.links, sizes, strict=True):
            if link.cid.codec == RAW:
                if link.tsize != size:
                    raise InvalidArgumentError(
                        f"file node {cid} declares leaf {link.cid} as {size:,} bytes in its "
                        f"blocksizes but {link.tsize:,} in its link"
                    )
                child = _leaf(size)
            else:
                child = self.node(link.cid, depth + 1)
                if child.is_directory:
                    raise InvalidArgumentError(f"file node {cid} links to directory {link.cid}")
                if child.file_bytes != size:
                    raise InvalidArgumentError(
                        f"block {link.cid} holds {child.file_bytes:,} bytes of the file but its "
                        f"parent {cid} declares {size:,}"
                    )
                self._check_tsize(cid, link.cid, link.tsize, child)
            total = self._add(total, child, depth)
        return total

    def _directory(self, cid: CID, block: bytes, node: DecodedNode, depth: int) -> DagShape:
        total = DagShape(len(block), 0, len(node.links), 0, len(block), is_directory=True)
        self._check(total, depth)
        names: set[str] = set()
        for link in node.links:
            name = check_entry_name(link.name)
            if name in names:
                raise InvalidArgumentError(
                    f"directory {cid} has two entries named {name!r}; refused before writing"
                )
            names.add(name)
            wanted = self._include is None or self._include(name)
            if link.cid.codec == RAW:
                child = _leaf(link.tsize, read=wanted)
            elif wanted:
                child = self.node(link.cid, depth + 1)
                self._check_tsize(cid, link.cid, link.tsize, child)
            else:  # read only to learn whether it is a directory, whose files may be wanted
                child_block = self._source(link.cid)
                if _decode(link.cid, child_block).kind == UNIXFS_DIRECTORY:
                    child = self.node(link.cid, depth + 1, child_block)
                    self._check_tsize(cid, link.cid, link.tsize, child)
                else:
                    child = DagShape(len(child_block), 0, 0, 0, link.tsize)
            total = self._add(total, child, depth)
        return total

    @staticmethod
    def _check_tsize(parent: CID, cid: CID, declared: int, child: DagShape) -> None:
        if declared != child.tsize:
            raise InvalidArgumentError(
                f"node {parent} declares {declared:,} bytes (Tsize) under {cid}, whose blocks "
                f"hold {child.tsize:,}"
            )


def measure_dag(
    root: CID, source: BlockSource, limits: DagLimits, include: EntryFilter | None = None
) -> DagShape:
    """Walk the DAG `root`'s nodes and refuse it if it breaks `limits` or its own declarations.

    `include`, if given, names the files of directories that will be read: the others are
    fetched only far enough to tell files from directories, and are not counted.
    """
    walk = _Walk(root, source, limits, include)
    if root.codec == RAW:
        shape = _leaf(len(source(root)))
        walk._check(shape, 0)
        return shape
    return walk.node(root, 0)
