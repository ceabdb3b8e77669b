"""Byte ranges of UnixFS files, and the documents of a dataset as ranges of its files.

A File node's `blocksizes` give each child's byte count, so a range is read by walking only the
children that overlap it: a few blocks from the root to the leaves, whatever the file's size.

A dataset is either a directory, whose `.txt` files are one document each, or one JSON Lines
file, whose non-blank lines are one document each (an object with a string text field). A
`DocumentRef` names a document by its file and byte range, so one document can be read back
alone (`read_document`), from the blocks `range_blocks` lists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tokenweave.errors import InvalidArgumentError
from tokenweave.storage._cid import CID, RAW
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    DecodedNode,
    MalformedNodeError,
    PBLink,
    blocksizes,
    decode_node,
)
from tokenweave.storage._exporter import BlockSource, read_file
from tokenweave.storage._importer import check_entry_name


@dataclass(frozen=True, slots=True)
class _FileNode:
    #: Bytes held in the node itself; they come before the children's.
    data: bytes
    #: (child, its byte count) in file order.
    children: tuple[tuple[CID, int], ...]

    @property
    def size(self) -> int:
        return len(self.data) + sum(size for _, size in self.children)


def _decode(cid: CID, block: bytes) -> DecodedNode:
    try:
        return decode_node(block)
    except (MalformedNodeError, InvalidArgumentError) as exc:
        raise InvalidArgumentError(f"block {cid} is not a UnixFS node: {exc}") from exc


def _with_block(source: BlockSource, cid: CID, block: bytes) -> BlockSource:
    """`source`, answering for `cid` with the block already fetched."""
    return lambda wanted: block if wanted == cid else source(wanted)


def _file_node(cid: CID, block: bytes) -> _FileNode:
    if cid.codec == RAW:
        return _FileNode(block, ())
    node = _decode(cid, block)
    if node.kind != UNIXFS_FILE:
        raise InvalidArgumentError(f"{cid} is not a file")
    sizes = blocksizes(block)
    if len(sizes) != len(node.links):
        raise InvalidArgumentError(
            f"file node {cid} has {len(node.links)} links but {len(sizes)} blocksizes"
        )
    return _FileNode(
        node.data, tuple((link.cid, size) for link, size in zip(node.links, sizes, strict=True))
    )


def _pieces(
    cid: CID, node: _FileNode, start: int, end: int, source: BlockSource, fetch_leaves: bool
) -> Iterator[tuple[CID, bytes]]:
    """(block, its bytes within [start, end)) for every block overlapping the range, root first.

    Raw leaves are fetched only with `fetch_leaves`; otherwise they come with no bytes.
    """
    yield cid, node.data[start:end]
    low = len(node.data)
    for child, size in node.children:
        high = low + size
        if low >= end:
            return
        if max(start, low) < min(end, high):
            if child.codec == RAW and not fetch_leaves:
                yield child, b""
            else:
                sub = _file_node(child, source(child))
                if sub.size != size:
                    raise InvalidArgumentError(
                        f"block {child} holds {sub.size} bytes but its parent {cid} says {size}"
                    )
                yield from _pieces(
                    child, sub, max(start, low) - low, min(end, high) - low, source, fetch_leaves
                )
        low = high


def _range_pieces(
    cid: CID, source: BlockSource, start: int, end: int, fetch_leaves: bool
) -> Iterator[tuple[CID, bytes]]:
    if start > end:
        raise InvalidArgumentError(f"range start {start} is after its end {end}")
    root = _file_node(cid, source(cid))
    if start < 0 or end > root.size:
        raise InvalidArgumentError(
            f"range [{start}, {end}) is outside file {cid}, which holds {root.size} bytes"
        )
    return _pieces(cid, root, start, end, source, fetch_leaves)


def read_range(cid: CID, source: BlockSource, start: int, end: int) -> bytes:
    """Bytes [start, end) of the file `cid`, fetching only the blocks that hold them."""
    return b"".join(piece for _, piece in _range_pieces(cid, source, start, end, True))


def range_blocks(cid: CID, source: BlockSource, start: int, end: int) -> list[CID]:
    """The blocks `read_range` fetches, in the order it fetches them (root and interior nodes too).

    Interior nodes are fetched to find the leaves; the leaves themselves are not.
    """
    return [block for block, _ in _range_pieces(cid, source, start, end, False)]


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """A document: bytes [start, end) of `file`, named by its path in the dataset or `line N`."""

    name: str
    file: CID
    start: int
    end: int


def _utf8(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError(
            f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None


#: The JSON name of each type `json.loads` gives.
_JSON_TYPES = {
    type(None): "null",
    bool: "boolean",
    int: "number",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def _line_object(line: bytes, where: str) -> dict[str, object]:
    try:
        value = json.loads(_utf8(line, where))
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(
            f"{where}: not valid JSON ({exc.msg} at column {exc.colno})"
        ) from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"{where}: a JSON {_JSON_TYPES[type(value)]}, not an object")
    return value


def _string_field(value: dict[str, object], field: str, where: str) -> str:
    text = value[field]
    if not isinstance(text, str):
        raise InvalidArgumentError(
            f"{where}: field {field!r} is a JSON {_JSON_TYPES[type(text)]}, not a string"
        )
    return text


def _line_text(line: bytes, where: str, text_field: str) -> str:
    value = _line_object(line, where)
    if text_field not in value:
        raise InvalidArgumentError(f"{where}: no {text_field!r} field")
    return _string_field(value, text_field, where)


def _is_blank(line: bytes) -> bool:
    return not line.strip(b" \t\r")


def _jsonl_documents(
    file: CID, source: BlockSource, text_field: str, name_field: str
) -> list[tuple[DocumentRef, str]]:
    documents: list[tuple[DocumentRef, str]] = []
    number = line_start = size = 0
    pending: list[bytes] = []

    def add(line: bytes) -> None:
        nonlocal number, line_start
        number += 1
        if not _is_blank(line):
            where = f"line {number} of {file}"
            value = _line_object(line, where)
            if text_field not in value:
                raise InvalidArgumentError(f"{where}: no {text_field!r} field")
            text = _string_field(value, text_field, where)
            name = f"line {number}"
            if name_field and name_field in value:
                name = _string_field(value, name_field, where)
            ref = DocumentRef(name, file, line_start, line_start + len(line))
            documents.append((ref, text))
        line_start += len(line) + 1

    for chunk in read_file(file, source):
        size += len(chunk)
        offset = 0
        while (newline := chunk.find(b"\n", offset)) >= 0:
            pending.append(chunk[offset:newline])
            add(b"".join(pending))
            pending.clear()
            offset = newline + 1
        pending.append(chunk[offset:])
    if size == 0:
        raise InvalidArgumentError(f"file {file} is empty")
    if line_start < size:
        add(b"".join(pending))
    if not documents:
        raise InvalidArgumentError(f"file {file} has only blank lines")
    return documents


def _files(
    links: Sequence[PBLink], source: BlockSource, prefix: str, suffixes: tuple[str, ...]
) -> Iterator[tuple[str, CID, bytes]]:
    """(path, file, its bytes) for the files below a directory's links whose names end in one
    of `suffixes`."""
    for link in links:
        path = prefix + check_entry_name(link.name)
        if link.cid.codec == RAW:
            if path.endswith(suffixes):
                data = source(link.cid)
                if len(data) != link.tsize:
                    raise InvalidArgumentError(
                        f"block {link.cid} holds {len(data)} bytes but its directory declares "
                        f"{link.tsize}"
                    )
                yield path, link.cid, data
            continue
        block = source(link.cid)
        node = _decode(link.cid, block)
        if node.kind == UNIXFS_DIRECTORY:
            yield from _files(node.links, source, path + "/", suffixes)
        elif node.kind == UNIXFS_FILE and path.endswith(suffixes):
            data = b"".join(read_file(link.cid, _with_block(source, link.cid, block)))
            yield path, link.cid, data


def dataset_files(
    root: CID, source: BlockSource, suffixes: tuple[str, ...], name: str = ""
) -> list[tuple[str, CID, bytes]]:
    """(path, file, bytes) of the files of a dataset whose names end in `suffixes`, sorted by
    path (subdirectories included); a dataset that is one file is that file, named `name`."""
    block = source(root)
    node = None if root.codec == RAW else _decode(root, block)
    if node is None or node.kind != UNIXFS_DIRECTORY:
        return [(name, root, b"".join(read_file(root, _with_block(source, root, block))))]
    return _directory_files(root, node.links, source, suffixes)


def _directory_files(
    root: CID, links: Sequence[PBLink], source: BlockSource, suffixes: tuple[str, ...]
) -> list[tuple[str, CID, bytes]]:
    files = sorted(_files(links, source, "", suffixes), key=lambda entry: entry[0])
    if not files:
        raise InvalidArgumentError(f"directory {root} holds no {' or '.join(suffixes)} file")
    return files


def dataset_documents(
    root: CID, source: BlockSource, text_field: str = "text", name_field: str = ""
) -> list[tuple[DocumentRef, str]]:
    """Every document of the dataset `root`, with its text, in dataset order.

    A directory gives one document per `.txt` file below it (subdirectories included), named by
    its path and sorted by it; other files are ignored. A file is read as JSON Lines: one document
    per non-blank line, an object whose `text_field` is a string, named by its `name_field` (a
    string) where it has one, else `line N` (from 1).
    """
    block = source(root)
    node = None if root.codec == RAW else _decode(root, block)
    if node is None or node.kind != UNIXFS_DIRECTORY:
        return _jsonl_documents(root, _with_block(source, root, block), text_field, name_field)
    files = _directory_files(root, node.links, source, (".txt",))
    return [
        (DocumentRef(path, file, 0, len(data)), _utf8(data, path)) for path, file, data in files
    ]


def read_document(ref: DocumentRef, source: BlockSource, text_field: str | None) -> str:
    """The text of one document, read from its range alone; the same as `dataset_documents`'.

    `text_field` is None for a `.txt` document, else the JSON Lines field holding the text.
    """
    data = read_range(ref.file, source, ref.start, ref.end)
    if text_field is None:
        return _utf8(data, ref.name)
    return _line_text(data, f"{ref.name} of {ref.file}", text_field)
