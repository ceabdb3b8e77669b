"""dag-pb nodes and UnixFS data, encoded byte for byte as IPFS does.

PBNode serialises its Links (field 2) before its Data (field 1); each PBLink carries Hash (1),
Name (2) and Tsize (3). UnixFS `Data` is proto2: Type (1), Data (2), filesize (3), and one
unpacked varint per entry of blocksizes (4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenweave.storage._cid import CID, encode_varint

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
