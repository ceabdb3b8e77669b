"""A DAG's expanded size, links, depth and fan-out are measured before it is read, and its
declared sizes are checked against its blocks: amplification DAGs are refused, not read."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tokenweave.errors import InvalidArgumentError
from tokenweave.storage import (
    CID,
    DAG_PB,
    RAW,
    DagLimits,
    ImportProfile,
    export,
    import_directory,
    import_file,
    measure_dag,
    read_file,
)
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    PBLink,
    decode_node,
    encode_node,
    unixfs_data,
)

from .test_documents import Blocks

TINY = ImportProfile("tiny", 64, 3)


def file_node(blocks: Blocks, children: list[tuple[CID, int, int]]) -> CID:
    """A File node over (child, its file bytes, its Tsize)."""
    block = encode_node(
        [PBLink(cid, "", tsize) for cid, _, tsize in children],
        unixfs_data(
            UNIXFS_FILE,
            filesize=sum(size for _, size, _ in children),
            blocksizes=[size for _, size, _ in children],
        ),
    )
    return blocks.add(DAG_PB, block)


def tsize(blocks: Blocks, cid: CID) -> int:
    """A node's honest Tsize, as an importer would write it."""
    if cid.codec == RAW:
        return len(blocks.blocks[cid])
    node = decode_node(blocks.blocks[cid])
    return len(blocks.blocks[cid]) + sum(link.tsize for link in node.links)


def bomb(blocks: Blocks, leaf_bytes: int, fan: int) -> tuple[CID, CID, CID]:
    """One leaf linked `fan` times by a node linked `fan` times: fan² leaves declared, honestly."""
    leaf = blocks.add(RAW, b"x" * leaf_bytes)
    middle = file_node(blocks, [(leaf, leaf_bytes, leaf_bytes)] * fan)
    root = file_node(blocks, [(middle, leaf_bytes * fan, tsize(blocks, middle))] * fan)
    return root, middle, leaf


def test_a_leaf_linked_a_million_times_is_refused_without_reading_it(tmp_path: Path) -> None:
    blocks = Blocks()
    root, middle, leaf = bomb(blocks, 1 << 20, 1000)  # 1 MiB of leaf, 1 TB declared
    with pytest.raises(InvalidArgumentError, match="expanded-size limit"):
        measure_dag(root, blocks, DagLimits(max_bytes=256 << 20))
    assert set(blocks.fetched) == {root, middle}, "only the two interior nodes are fetched"
    blocks.fetched.clear()
    with pytest.raises(InvalidArgumentError, match="limit"):
        export(root, blocks, tmp_path / "out")
    assert leaf not in blocks.fetched
    assert list(tmp_path.iterdir()) == [], "nothing is written"


def test_the_link_count_counts_every_reach() -> None:
    blocks = Blocks()
    root, _, _ = bomb(blocks, 1, 400)  # 160,400 links reached, 160,000 bytes of files
    with pytest.raises(InvalidArgumentError, match="link-count limit"):
        measure_dag(root, blocks, DagLimits(max_links=100_000))
    shape = measure_dag(root, blocks, DagLimits(max_links=200_000))
    assert (shape.links, shape.file_bytes, shape.depth) == (400 + 400 * 400, 160_000, 2)
    assert shape.bytes == shape.tsize == tsize(blocks, root)


def test_depth_and_fan_out_limits() -> None:
    blocks = Blocks()
    node = blocks.add(RAW, b"deep")
    size = 4
    for _ in range(40):
        node = file_node(blocks, [(node, size, tsize(blocks, node))])
    with pytest.raises(InvalidArgumentError, match="depth limit"):
        measure_dag(node, blocks, DagLimits(max_depth=32))
    assert measure_dag(node, blocks, DagLimits(max_depth=40)).depth == 40

    leaf = blocks.add(RAW, b"w")
    wide = file_node(blocks, [(leaf, 1, 1)] * 20)
    with pytest.raises(InvalidArgumentError, match="fan-out limit is 10"):
        measure_dag(wide, blocks, DagLimits(max_fanout=10))


def test_honest_imports_measure_what_they_hold(tmp_path: Path) -> None:
    (tmp_path / "in" / "sub").mkdir(parents=True)
    (tmp_path / "in" / "a.txt").write_bytes(b"a" * 1000)
    (tmp_path / "in" / "sub" / "b.bin").write_bytes(b"b" * 333)
    (tmp_path / "in" / "sub" / "c.txt").write_bytes(b"c")
    blocks = Blocks()
    root = import_directory(tmp_path / "in", blocks.put, TINY)
    shape = measure_dag(root.cid, blocks, DagLimits())
    assert (shape.file_bytes, shape.tsize, shape.bytes) == (1334, root.tsize, root.tsize)
    only_text = measure_dag(root.cid, blocks, DagLimits(), include=lambda n: n.endswith(".txt"))
    assert only_text.file_bytes == 1001
    assert only_text.bytes < shape.bytes
    big = Blocks()
    file_root = import_file(io.BytesIO(bytes(range(256)) * 40), big.put, TINY)
    assert measure_dag(file_root.cid, big, DagLimits()).tsize == file_root.tsize


def test_a_link_understating_its_subtree_is_refused() -> None:
    blocks = Blocks()
    _, middle, _ = bomb(blocks, 100, 10)
    liar = file_node(blocks, [(middle, 1000, 5)])  # Tsize 5: "this is tiny"
    with pytest.raises(InvalidArgumentError, match=r"declares 5 bytes \(Tsize\)"):
        measure_dag(liar, blocks, DagLimits())


def test_a_filesize_that_does_not_add_up_is_refused() -> None:
    blocks = Blocks()
    leaf = blocks.add(RAW, b"y" * 10)
    block = encode_node(
        [PBLink(leaf, "", 10)], unixfs_data(UNIXFS_FILE, filesize=1, blocksizes=[10])
    )
    root = blocks.add(DAG_PB, block)
    with pytest.raises(InvalidArgumentError, match="declares 1 bytes but"):
        measure_dag(root, blocks, DagLimits())
    with pytest.raises(InvalidArgumentError, match="declared"):
        list(read_file(root, blocks))


def test_a_leaf_bigger_than_declared_is_never_written(tmp_path: Path) -> None:
    """A DAG of a few bytes by its declarations whose leaf holds 256 KiB: the read stops at the
    leaf, before yielding it, and the export leaves nothing behind."""
    blocks = Blocks()
    leaf = blocks.add(RAW, b"z" * (256 << 10))
    small = blocks.add(RAW, b"ok")
    root = file_node(blocks, [(small, 2, 2), (leaf, 16, 16)])
    shape = measure_dag(root, blocks, DagLimits())
    assert shape.file_bytes == 18, "leaves are measured by what their parent declares"
    chunks = read_file(root, blocks)
    assert next(chunks) == b"ok"
    with pytest.raises(InvalidArgumentError, match="holds 262,144 bytes but 16 were declared"):
        next(chunks)
    with pytest.raises(InvalidArgumentError, match="were declared"):
        export(root, blocks, tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


def test_export_writes_no_more_than_the_dataset_was_recorded_with(tmp_path: Path) -> None:
    """A 4 KiB upload whose root links its one leaf 256 times declares 1 MiB honestly: when
    the dataset was recorded as 4 KiB, `data get` refuses it before writing."""
    blocks = Blocks()
    leaf = blocks.add(RAW, b"q" * 4096)
    root = file_node(blocks, [(leaf, 4096, 4096)] * 256)
    with pytest.raises(InvalidArgumentError, match="more than the 4,096 expected"):
        export(root, blocks, tmp_path / "out.bin", max_file_bytes=4096)
    assert list(tmp_path.iterdir()) == []
    shape = export(root, blocks, tmp_path / "out.bin", max_file_bytes=1 << 20)
    assert (tmp_path / "out.bin").stat().st_size == shape.file_bytes == 1 << 20


def test_a_directory_linking_itself_deeply_is_bounded() -> None:
    blocks = Blocks()
    leaf = blocks.add(RAW, b"t" * 1000)
    links = [PBLink(leaf, f"{i:03}.txt", 1000) for i in range(100)]
    node = blocks.add(DAG_PB, encode_node(links, unixfs_data(UNIXFS_DIRECTORY)))
    for _ in range(3):  # each level: 100 names for the same directory
        size = tsize(blocks, node)
        links = [PBLink(node, f"d{i:03}", size) for i in range(100)]
        node = blocks.add(DAG_PB, encode_node(links, unixfs_data(UNIXFS_DIRECTORY)))
    with pytest.raises(InvalidArgumentError, match="limit"):
        measure_dag(node, blocks, DagLimits(), include=lambda n: n.endswith(".txt"))
    assert len(set(blocks.fetched)) == 4
