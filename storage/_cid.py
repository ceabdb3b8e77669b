"""CID: content identifiers, version 1, sha2-256 multihash, base32 text form (`bafy…`, `bafk…`)."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import ClassVar

from tokenweave.errors import InvalidArgumentError, clip

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
_CODECS = {RAW: "raw", DAG_PB: "dag-pb"}


class InvalidCidError(InvalidArgumentError):
    """A CID that is malformed or uses something other than CIDv1 + sha2-256."""


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int) -> tuple[int, int]:
    """(value, next offset)."""
    value = shift = 0
    for i in range(offset, min(len(data), offset + 10)):
        value |= (data[i] & 0x7F) << shift
        if not data[i] & 0x80:
            return value, i + 1
        shift += 7
    raise InvalidArgumentError("truncated or overlong varint")


@dataclass(frozen=True, slots=True)
class CID:
    codec: int
    digest: bytes

    VERSION: ClassVar[int] = 1

    @classmethod
    def of(cls, codec: int, block: bytes) -> CID:
        return cls(codec, hashlib.sha256(block).digest())

    def __bytes__(self) -> bytes:
        return (
            encode_varint(self.VERSION)
            + encode_varint(self.codec)
            + encode_varint(SHA2_256)
            + encode_varint(len(self.digest))
            + self.digest
        )

    def __str__(self) -> str:
        return "b" + base64.b32encode(bytes(self)).decode().lower().rstrip("=")

    @property
    def codec_name(self) -> str:
        return _CODECS.get(self.codec, hex(self.codec))

    def verify(self, block: bytes) -> bool:
        return hashlib.sha256(block).digest() == self.digest

    @classmethod
    def from_bytes(cls, data: bytes) -> CID:
        version, i = decode_varint(data, 0)
        if version != cls.VERSION:
            raise InvalidCidError(f"CID version {version} is not supported; only CIDv1")
        codec, i = decode_varint(data, i)
        if codec not in _CODECS:
            raise InvalidCidError(f"codec {codec:#x} is not supported; only raw and dag-pb")
        hash_code, i = decode_varint(data, i)
        length, i = decode_varint(data, i)
        if hash_code != SHA2_256 or length != 32:
            raise InvalidCidError("only sha2-256 multihashes (32 bytes) are supported")
        digest = data[i:]
        if len(digest) != length:
            raise InvalidCidError(f"multihash digest is {len(digest)} bytes, expected {length}")
        return cls(codec, digest)

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse the base32 text form; anything else raises InvalidCidError naming the input."""
        if not text.startswith("b") or len(text) < 10:
            raise InvalidCidError(
                f"{clip(text, 100)} is not a base32 CIDv1 (it should start with 'b')"
            )
        body = text[1:].upper()
        try:
            raw = base64.b32decode(body + "=" * (-len(body) % 8))
        except ValueError:
            raise InvalidCidError(f"{clip(text, 100)} is not valid base32") from None
        try:
            return cls.from_bytes(raw)
        except InvalidArgumentError as exc:
            raise InvalidCidError(f"{clip(text, 100)}: {exc.message}") from None
