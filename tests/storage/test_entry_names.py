"""Entry names a filesystem cannot take, or that collide, are clean errors naming the entry,
and an export that fails for any reason leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenweave.errors import FailedPreconditionError, InvalidArgumentError
from tokenweave.storage import CID, DAG_PB, RAW, export
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    PBLink,
    _bytes_field,
    _varint_field,
    encode_node,
    unixfs_data,
)

from .test_documents import Blocks


def raw_link(cid: CID, name: bytes, tsize: int) -> bytes:
    """A PBLink with any name bytes, UTF-8 or not."""
    return _bytes_field(1, bytes(cid)) + _bytes_field(2, name) + _varint_field(3, tsize)


def directory(blocks: Blocks, entries: list[tuple[bytes, CID]]) -> CID:
    body = b"".join(
        _bytes_field(2, raw_link(cid, name, len(blocks.blocks[cid]))) for name, cid in entries
    )
    return blocks.add(DAG_PB, body + _bytes_field(1, unixfs_data(UNIXFS_DIRECTORY)))


def assert_nothing_written(parent: Path) -> None:
    assert list(parent.iterdir()) == [], "no output, no staging folder"


@pytest.fixture
def blocks() -> Blocks:
    return Blocks()


def test_a_name_that_is_not_utf8_is_an_invalid_argument(blocks: Blocks, tmp_path: Path) -> None:
    good = blocks.add(RAW, b"good")
    root = directory(blocks, [(b"a.txt", good), (b"\xff\xfe.txt", good)])
    with pytest.raises(InvalidArgumentError, match=r"link name b'\\xff\\xfe.txt' is not UTF-8"):
        export(root, blocks, tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_a_300_byte_name_is_an_invalid_argument(blocks: Blocks, tmp_path: Path) -> None:
    good = blocks.add(RAW, b"good")
    root = directory(blocks, [(b"a.txt", good), (b"n" * 300, good)])
    with pytest.raises(InvalidArgumentError, match="is 300 bytes; names are at most 255"):
        export(root, blocks, tmp_path / "out")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("second", ["file", "directory"])
def test_two_entries_with_one_name_write_nothing(
    blocks: Blocks, tmp_path: Path, second: str
) -> None:
    data = blocks.add(RAW, b"first")
    inner = directory(blocks, [(b"x", data)])
    root = directory(blocks, [(b"a", data), (b"a", data if second == "file" else inner)])
    with pytest.raises(InvalidArgumentError, match="two entries named 'a'"):
        export(root, blocks, tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_a_nested_bad_name_writes_nothing(blocks: Blocks, tmp_path: Path) -> None:
    data = blocks.add(RAW, b"data")
    inner = directory(blocks, [(b"ok", data), (b"..", data)])
    root = directory(blocks, [(b"first.txt", data), (b"sub", inner)])
    with pytest.raises(InvalidArgumentError, match=r"'\.\.' is not allowed"):
        export(root, blocks, tmp_path / "out")
    assert_nothing_written(tmp_path)


def test_a_block_missing_midway_leaves_no_partial_output(blocks: Blocks, tmp_path: Path) -> None:
    """Structure complete, one leaf lost: the first file was written already, and is removed."""
    data = blocks.add(RAW, b"data")
    lost = CID.of(RAW, b"lost")
    body = encode_node(
        [PBLink(data, "a.txt", 4), PBLink(lost, "b.txt", 4)], unixfs_data(UNIXFS_DIRECTORY)
    )
    root = blocks.add(DAG_PB, body)
    with pytest.raises(KeyError):
        export(root, blocks, tmp_path / "out")
    assert_nothing_written(tmp_path)
    blocks.blocks[lost] = b"lost"
    export(root, blocks, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.txt", "b.txt"]
    with pytest.raises(InvalidArgumentError, match="already exists"):
        export(root, blocks, tmp_path / "out")


def test_an_unwritable_destination_is_a_clean_error(blocks: Blocks, tmp_path: Path) -> None:
    data = blocks.add(RAW, b"data")
    (tmp_path / "file").write_bytes(b"not a folder")
    with pytest.raises(FailedPreconditionError, match=r"cannot write in .*file"):
        export(data, blocks, tmp_path / "file" / "out")
