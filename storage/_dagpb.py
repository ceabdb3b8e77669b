"""dag-pb nodes and UnixFS data, encoded byte for byte as IPFS does.

PBNode serialises its Links (field 2) before its Data (field 1); each PBLink carries Hash (1),
Name (2) and Tsize (3). UnixFS `Data` is proto2: Type (1), Data (2), filesize (3), and one
unpacked varint per entry of blocksizes (4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenweave.errors import clip
from tokenweave.storage._cid import CID, decode_varint, encode_varint

UNIXFS_FILE = 2
UNIXFS_DIRECTORY = 1


def _field(number: int, wire_type: int) -> bytes:
    return encode_varint(number << 3 | wire_type)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _field(number, 2) + encode_varint(len(value)) + value


def _varint_field(number: int, value: int) -> bytes:
    return _field(number, 0) + encode_varint(value)


@dataclass(frozen=True, slots=True)
class PBLink:
    cid: CID
    name: str
    #: Bytes of the whole sub-DAG: the child's block plus everything below it.
    tsize: int

    def encode(self) -> bytes:
        return (
            _bytes_field(1, bytes(self.cid))
            + _bytes_field(2, self.name.encode())
            + _varint_field(3, self.tsize)
        )


def encode_node(links: Sequence[PBLink], data: bytes | None) -> bytes:
    out = b"".join(_bytes_field(2, link.encode()) for link in links)
    if data is not None:
        out += _bytes_field(1, data)
    return out


def unixfs_data(kind: int, filesize: int | None = None, blocksizes: Sequence[int] = ()) -> bytes:
    out = _varint_field(1, kind)
    if filesize is not None:
        out += _varint_field(3, filesize)
    for size in blocksizes:
        out += _varint_field(4, size)
    return out


class MalformedNodeError(ValueError):
    """Bytes that are not a dag-pb node or UnixFS data."""


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) for varint and length-delimited fields, in order."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(data):
        key, i = decode_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = decode_varint(data, i)
            out.append((number, value))
        elif wire == 2:
            length, i = decode_varint(data, i)
            if i + length > len(data):
                raise MalformedNodeError("a field runs past the end of the node")
            out.append((number, data[i : i + length]))
            i += length
        else:
            raise MalformedNodeError(f"unexpected wire type {wire}")
    return out


@dataclass(frozen=True, slots=True)
class DecodedNode:
    links: tuple[PBLink, ...]
    kind: int
    data: bytes
    filesize: int


def decode_node(block: bytes) -> DecodedNode:
    links: list[PBLink] = []
    unixfs = b""
    for number, value in _fields(block):
        if number == 2 and isinstance(value, bytes):
            parts = dict(_fields(value))
            hash_ = parts.get(1)
            if not isinstance(hash_, bytes):
                raise MalformedNodeError("a link without a hash")
            name = parts.get(2, b"")
            tsize = parts.get(3, 0)
            try:
                text = name.decode() if isinstance(name, bytes) else ""
            except UnicodeDecodeError:
                raise MalformedNodeError(f"link name {clip(name)} is not UTF-8") from None
            links.append(
                PBLink(CID.from_bytes(hash_), text, tsize if isinstance(tsize, int) else 0)
            )
        elif number == 1 and isinstance(value, bytes):
            unixfs = value
    kind, data, filesize = -1, b"", 0
    for number, value in _fields(unixfs):
        if number == 1 and isinstance(value, int):
            kind = value
        elif number == 2 and isinstance(value, bytes):
            data = value
        elif number == 3 and isinstance(value, int):
            filesize = value
    if kind < 0:
        raise MalformedNodeError("the node carries no UnixFS type")
    return DecodedNode(tuple(links), kind, data, filesize)


def blocksizes(block: bytes) -> list[int]:
    """A File node's `blocksizes`: each child's byte count, in order (packed or not)."""
    unixfs = b""
    for number, value in _fields(block):
        if number == 1 and isinstance(value, bytes):
            unixfs = value
    sizes: list[int] = []
    for number, value in _fields(unixfs):
        if number != 4:
            continue
        if isinstance(value, int):
            sizes.append(value)
            continue
        i = 0  # packed, which proto2 readers accept too
        while i < len(value):
            size, i = decode_varint(value, i)
            sizes.append(size)
    return sizes
