from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.storage import (
    CID,
    DAG_PB,
    RAW,
    BlockStore,
    ImportProfile,
    export,
    file_leaves,
    import_directory,
    import_file,
)
from tokenweave.storage._dagpb import UNIXFS_DIRECTORY, PBLink, encode_node, unixfs_data

TINY = ImportProfile("tiny", 64, 3)


def _tree(root: Path) -> None:
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"".join(hashlib.sha256(bytes([i])).digest() for i in range(40)))
    (root / "sub" / "b").write_bytes(b"x" * 300)
    (root / "sub" / "empty").write_bytes(b"")


def test_a_directory_round_trips_through_a_block_store(tmp_path: Path) -> None:
    _tree(tmp_path / "in")
    store = BlockStore(tmp_path / "store")
    root = import_directory(tmp_path / "in", lambda b: store.put(b.cid, b.data), TINY)
    export(root.cid, store.get, tmp_path / "out")
    for path in (tmp_path / "in").rglob("*"):
        copy = tmp_path / "out" / path.relative_to(tmp_path / "in")
        assert copy.is_dir() if path.is_dir() else copy.read_bytes() == path.read_bytes()
    with pytest.raises(InvalidArgumentError, match="already exists"):
        export(root.cid, store.get, tmp_path / "out")


def test_a_dag_naming_a_parent_directory_cannot_escape(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "store")
    leaf = CID.of(0x55, b"evil")
    store.put(leaf, b"evil")
    for name in ("../escaped", "/etc/escaped"):
        block = encode_node([PBLink(leaf, name, 4)], unixfs_data(UNIXFS_DIRECTORY))
        cid = CID.of(DAG_PB, block)
        store.put(cid, block)
        with pytest.raises(InvalidArgumentError, match="is not allowed"):
            export(cid, store.get, tmp_path / "out" / "x")
        assert not (tmp_path / "out" / "x").exists(), "nothing is created for a bad DAG"
    assert not (tmp_path / "out" / "escaped").exists()
    assert not Path("/etc/escaped").exists()


def test_missing_and_malformed_blocks(tmp_path: Path) -> None:
    store = BlockStore(tmp_path / "store")
    with pytest.raises(NotFoundError):
        export(CID.of(0x55, b"absent"), store.get, tmp_path / "out")
    garbage = b"\x0a\xff\xff\xff"
    cid = CID.of(DAG_PB, garbage)
    store.put(cid, garbage)
    with pytest.raises(InvalidArgumentError, match="is not a UnixFS node"):
        export(cid, store.get, tmp_path / "out2")
    assert not (tmp_path / "out2").exists()


def test_a_files_leaves_are_listed_in_order_from_its_interior_blocks() -> None:
    blocks: dict[CID, bytes] = {}
    data = bytes(range(256)) * 3  # 768 bytes: 12 leaves of 64 under two levels of width 3
    root = import_file(io.BytesIO(data), lambda b: blocks.__setitem__(b.cid, b.data), TINY).cid
    read: list[CID] = []

    def interior(cid: CID) -> bytes:
        read.append(cid)
        return blocks[cid]

    leaves = file_leaves(root, interior)
    assert b"".join(blocks[leaf] for leaf in leaves) == data
    assert all(leaf.codec == RAW for leaf in leaves)
    assert not set(read) & set(leaves), "only interior blocks are read"
    assert file_leaves(leaves[0], interior) == [leaves[0]], "a file of one block is its leaf"
