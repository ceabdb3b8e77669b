from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from tokenweave.errors import NotFoundError, ResourceExhaustedError
from tokenweave.storage import (
    CID,
    MAX_BLOCK_BYTES,
    RAW,
    BlockStore,
    CorruptBlockError,
    ImportProfile,
    import_file,
)


def test_put_get_and_idempotence(tmp_path: Path) -> None:
    store = BlockStore(tmp_path)
    cid = CID.of(RAW, b"hello")
    assert store.put(cid, b"hello") is True
    assert store.put(cid, b"hello") is False
    assert store.get(cid) == b"hello"
    assert store.used_bytes == 5
    assert BlockStore(tmp_path).used_bytes == 5, "usage survives a reopen"
    assert not list(tmp_path.rglob(".tmp-*")), "no temp files left behind"


def test_bytes_that_do_not_match_the_cid_are_refused(tmp_path: Path) -> None:
    store = BlockStore(tmp_path)
    with pytest.raises(CorruptBlockError, match="do not hash to its CID"):
        store.put(CID.of(RAW, b"expected"), b"something else")
    assert store.used_bytes == 0


def test_a_flipped_byte_on_disk_is_caught_and_quarantined(tmp_path: Path) -> None:
    store = BlockStore(tmp_path)
    cid = CID.of(RAW, b"precious bytes")
    store.put(cid, b"precious bytes")
    [path] = (tmp_path / "blocks").rglob(str(cid))
    data = bytearray(path.read_bytes())
    data[3] ^= 0x20
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptBlockError, match="corrupt on disk"):
        store.get(cid)
    assert not store.has(cid), "the corrupt copy is out of the way, ready to be fetched again"
    assert (tmp_path / "quarantine" / str(cid)).exists()
    store.put(cid, b"precious bytes")
    assert store.get(cid) == b"precious bytes"


def test_names_are_derived_from_cids_only(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "store")
    cid = CID.of(RAW, b"x")
    store.put(cid, b"x")
    [path] = (tmp_path / "store").rglob(str(cid))
    assert path.resolve().is_relative_to((tmp_path / "store" / "blocks").resolve())
    assert set(str(cid)) <= set("abcdefghijklmnopqrstuvwxyz234567")


def test_unknown_blocks_oversized_blocks_and_the_quota(tmp_path: Path) -> None:
    store = BlockStore(tmp_path, quota_bytes=10)
    with pytest.raises(NotFoundError, match="not in this store"):
        store.get(CID.of(RAW, b"never stored"))
    big = b"\0" * (MAX_BLOCK_BYTES + 1)
    with pytest.raises(ResourceExhaustedError, match="blocks are at most"):
        store.put(CID.of(RAW, big), big)
    store.put(CID.of(RAW, b"12345678"), b"12345678")
    with pytest.raises(ResourceExhaustedError, match="is full: 8 of 10 bytes used"):
        store.put(CID.of(RAW, b"abc"), b"abc")
    assert store.used_bytes == 8


def test_garbage_collection_keeps_pins(tmp_path: Path) -> None:
    store = BlockStore(tmp_path)
    blocks = []
    data = b"".join(hashlib.sha256(str(i).encode()).digest() for i in range(200))
    root = import_file(io.BytesIO(data), blocks.append, ImportProfile("t", 1024, 2))
    assert len({b.cid for b in blocks}) == len(blocks) > 5
    for block in blocks:
        store.put(block.cid, block.data)
    keep = blocks[0].cid
    store.pin(keep)
    assert BlockStore(tmp_path).pinned(keep), "pins survive a reopen"
    freed = store.collect_garbage()
    assert freed == sum(len(b.data) for b in blocks[1:])
    assert store.has(keep)
    assert not store.has(root.cid)
    store.unpin(keep)
    assert store.collect_garbage() == len(blocks[0].data)
    assert store.used_bytes == 0
