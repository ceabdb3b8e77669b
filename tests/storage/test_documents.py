from __future__ import annotations

import io
import itertools
import json
import random
from pathlib import Path

import pytest

import tokenweave.storage
from tokenweave.errors import InvalidArgumentError
from tokenweave.storage import (
    CID,
    DAG_PB,
    RAW,
    Block,
    DocumentRef,
    ImportProfile,
    dataset_documents,
    import_directory,
    import_file,
    range_blocks,
    read_document,
    read_file,
    read_range,
)
from tokenweave.storage._dagpb import (
    UNIXFS_FILE,
    PBLink,
    _bytes_field,
    _varint_field,
    encode_node,
    unixfs_data,
)

#: 16-byte leaves, 3 per node: a kilobyte is a tree four levels deep.
TINY = ImportProfile("tiny", 16, 3)
CDC = ImportProfile("cdc", 256, 3, content_defined=True)


class Blocks:
    """A dict-backed BlockSource that records what it was asked for."""

    def __init__(self) -> None:
        self.blocks: dict[CID, bytes] = {}
        self.fetched: list[CID] = []

    def put(self, block: Block) -> None:
        self.blocks[block.cid] = block.data

    def add(self, codec: int, data: bytes) -> CID:
        cid = CID.of(codec, data)
        self.blocks[cid] = data
        return cid

    def __call__(self, cid: CID) -> bytes:
        self.fetched.append(cid)
        return self.blocks[cid]


def content(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def imported(data: bytes, profile: ImportProfile = TINY) -> tuple[CID, Blocks]:
    blocks = Blocks()
    root = import_file(io.BytesIO(data), blocks.put, profile)
    return root.cid, blocks


def ranges(size: int, boundaries: list[int], seed: int = 1) -> list[tuple[int, int]]:
    """Random ranges, ranges starting or ending on and next to boundaries, empty and whole."""
    rng = random.Random(seed)
    points = sorted(
        {p for b in [0, *boundaries, size] for p in (b - 1, b, b + 1) if 0 <= p <= size}
    )
    out = [(0, size), (0, 0), (size, size), (size // 2, size // 2)]
    out += [(p, q) for p in points for q in (p, p + 1, size) if q <= size]
    out += [(a, p) for p in points for a in (0, max(0, p - 1))]
    out += list(itertools.pairwise(points))
    for _ in range(200):
        a, b = rng.randint(0, size), rng.randint(0, size)
        out.append((min(a, b), max(a, b)))
    return out


@pytest.mark.parametrize(
    ("size", "profile"),
    [(0, TINY), (1, TINY), (16, TINY), (17, TINY), (1000, TINY), (997, TINY), (20_000, CDC)],
    ids=["empty", "1-byte", "one-leaf", "two-leaves", "four-levels", "uneven", "fastcdc"],
)
def test_a_range_is_the_slice_of_the_file(size: int, profile: ImportProfile) -> None:
    data = content(size)
    root, blocks = imported(data, profile)
    leaves = list(read_file(root, blocks))
    assert size <= 16 or len(leaves) > 1
    boundaries = list(itertools.accumulate(len(leaf) for leaf in leaves))
    for start, end in ranges(size, boundaries):
        assert read_range(root, blocks, start, end) == data[start:end], (start, end)


def test_a_single_raw_leaf() -> None:
    root, blocks = imported(b"hello, world", TINY)
    assert root.codec == RAW
    assert read_range(root, blocks, 7, 12) == b"world"
    assert range_blocks(root, blocks, 7, 12) == [root]
    assert range_blocks(root, blocks, 3, 3) == [root]


def test_only_the_blocks_of_the_range_are_fetched() -> None:
    data = content(1000)
    root, blocks = imported(data, TINY)
    for start, end in ranges(1000, list(range(0, 1000, 16)), seed=2):
        blocks.fetched.clear()
        listed = range_blocks(root, blocks, start, end)
        assert all(cid.codec == DAG_PB for cid in blocks.fetched), "no leaf is fetched to list"
        blocks.fetched.clear()
        assert read_range(root, blocks, start, end) == data[start:end]
        assert blocks.fetched == listed, (start, end)
        leaves = [cid for cid in listed if cid.codec == RAW]
        assert len(leaves) == len({i // 16 for i in range(start, end)})
    blocks.fetched.clear()
    read_range(root, blocks, 500, 510)
    # 63 leaves under 21 + 7 + 3 + 1 nodes; a range inside one leaf reads one path down.
    assert len(blocks.blocks) == 63 + 21 + 7 + 3 + 1
    assert len(blocks.fetched) == 5
    assert blocks.fetched[0] == root
    assert range_blocks(root, blocks, 500, 500) == [root], "an empty range needs only the root"


def file_node(data: bytes, children: list[tuple[CID, int]], *, packed: bool = False) -> bytes:
    """A File node with bytes of its own, as older importers (and `--raw-leaves=false`) write."""
    unixfs = _varint_field(1, UNIXFS_FILE) + _bytes_field(2, data)
    unixfs += _varint_field(3, len(data) + sum(size for _, size in children))
    if packed:
        unixfs += _bytes_field(4, b"".join(_varint_field(1, s)[1:] for _, s in children))
    else:
        unixfs += b"".join(_varint_field(4, size) for _, size in children)
    return encode_node([PBLink(cid, "", size) for cid, size in children], unixfs)


@pytest.mark.parametrize("packed", [False, True])
def test_nodes_holding_bytes_of_their_own(packed: bool) -> None:
    blocks = Blocks()
    leaf = blocks.add(RAW, b"CDE")
    inner = blocks.add(DAG_PB, file_node(b"B", [(leaf, 3)], packed=packed))
    only_data = blocks.add(DAG_PB, file_node(b"FGH", []))
    empty = blocks.add(RAW, b"")
    last = blocks.add(RAW, b"IJ")
    root = blocks.add(
        DAG_PB,
        file_node(b"A", [(inner, 4), (empty, 0), (only_data, 3), (last, 2)], packed=packed),
    )
    data = b"ABCDEFGHIJ"
    for start in range(len(data) + 1):
        for end in range(start, len(data) + 1):
            assert read_range(root, blocks, start, end) == data[start:end], (start, end)
    assert range_blocks(root, blocks, 0, 1) == [root]
    assert range_blocks(root, blocks, 1, 2) == [root, inner]
    assert range_blocks(root, blocks, 2, 6) == [root, inner, leaf, only_data]
    assert range_blocks(root, blocks, 4, 9) == [root, inner, leaf, only_data, last]


def test_bad_ranges_name_the_numbers() -> None:
    root, blocks = imported(content(100), TINY)
    with pytest.raises(InvalidArgumentError, match=r"range start 10 is after its end 5"):
        read_range(root, blocks, 10, 5)
    with pytest.raises(InvalidArgumentError, match=r"range \[90, 101\) is outside .* 100 bytes"):
        read_range(root, blocks, 90, 101)
    with pytest.raises(InvalidArgumentError, match=r"range \[-1, 5\) is outside .* 100 bytes"):
        range_blocks(root, blocks, -1, 5)
    with pytest.raises(InvalidArgumentError, match=r"range \[200, 300\) is outside"):
        read_range(root, blocks, 200, 300)


def test_inconsistent_or_foreign_nodes_are_refused(tmp_path: Path) -> None:
    blocks = Blocks()
    leaf = blocks.add(RAW, b"abcd")
    wrong_size = blocks.add(DAG_PB, file_node(b"", [(leaf, 5)]))
    with pytest.raises(InvalidArgumentError, match=r"holds 4 bytes but its parent .* says 5"):
        read_range(wrong_size, blocks, 0, 5)
    missing_sizes = blocks.add(
        DAG_PB, encode_node([PBLink(leaf, "", 4)], unixfs_data(UNIXFS_FILE, 4))
    )
    with pytest.raises(InvalidArgumentError, match="has 1 links but 0 blocksizes"):
        read_range(missing_sizes, blocks, 0, 1)
    (tmp_path / "d").mkdir()
    directory = import_directory(tmp_path / "d", blocks.put, TINY).cid
    with pytest.raises(InvalidArgumentError, match=f"{directory} is not a file"):
        read_range(directory, blocks, 0, 0)
    garbage = blocks.add(DAG_PB, b"\x0a\xff\xff\xff")
    with pytest.raises(InvalidArgumentError, match="is not a UnixFS node"):
        read_range(garbage, blocks, 0, 0)


JSONL_LINES = [
    {"text": "first", "id": 1},
    {"text": "héllo wörld — naïve café", "lang": "fr"},
    {"text": "日本語のテキスト " * 5},
    {"id": 4, "text": "emoji 🧵🪡 and a\nnewline inside"},
    {"text": ""},
]


def jsonl(lines: list[str], ending: str = "\n") -> bytes:
    return ending.join(lines).encode()


def test_json_lines_documents() -> None:
    lines = [json.dumps(x, ensure_ascii=False) for x in JSONL_LINES]
    lines.insert(2, "")
    lines.insert(4, "   ")
    data = jsonl(lines) + b"\n"
    root, blocks = imported(data, TINY)
    documents = dataset_documents(root, blocks)
    assert [ref.name for ref, _ in documents] == [
        "line 1",
        "line 2",
        "line 4",
        "line 6",
        "line 7",
    ]
    assert [text for _, text in documents] == [x["text"] for x in JSONL_LINES]
    crossing = 0
    for (ref, text), line in zip(documents, [x for x in lines if x.strip()], strict=True):
        assert ref.file == root
        assert data[ref.start : ref.end] == line.encode()
        assert read_document(ref, blocks, "text") == text
        crossing += ref.start // 16 != (ref.end - 1) // 16
    assert crossing >= 3, "lines span several leaves"


def test_json_lines_without_a_final_newline_with_crlf_and_another_field() -> None:
    lines = [json.dumps({"body": f"doc {i} ✓", "text": i}) for i in range(30)]
    data = jsonl(lines, "\r\n")
    root, blocks = imported(data, TINY)
    documents = dataset_documents(root, blocks, text_field="body")
    assert [text for _, text in documents] == [f"doc {i} ✓" for i in range(30)]
    assert documents[-1][0].end == len(data)
    for ref, text in documents:
        assert data[ref.start : ref.end].endswith(b"\r") != (ref is documents[-1][0])
        assert read_document(ref, blocks, "body") == text


def test_a_one_block_json_lines_file() -> None:
    root, blocks = imported(b'{"text": "only"}', ImportProfile("big", 1024, 3))
    assert root.codec == RAW
    ((ref, text),) = dataset_documents(root, blocks)
    assert (ref, text) == (DocumentRef("line 1", root, 0, 16), "only")


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b'{"text": "unclosed', r"line 2 of \S+: not valid JSON \(Unterminated string"),
        (b"not json", r"line 2 of \S+: not valid JSON \(Expecting value at column 1\)"),
        (b'["text", "a list"]', r"line 2 of \S+: a JSON array, not an object"),
        (b'"just a string"', r"line 2 of \S+: a JSON string, not an object"),
        (b'{"body": "x"}', r"line 2 of \S+: no 'text' field"),
        (b'{"text": 5}', r"line 2 of \S+: field 'text' is a JSON number, not a string"),
        (b'{"text": null}', r"line 2 of \S+: field 'text' is a JSON null, not a string"),
        (b'{"text": ["a"]}', r"line 2 of \S+: field 'text' is a JSON array, not a string"),
        (b'{"text": "caf\xe9"}', r"line 2 of \S+: not UTF-8 text \(invalid continuation byte"),
        (b'{"text": "\xff"}', r"line 2 of \S+: not UTF-8 text \(invalid start byte at byte 10\)"),
    ],
)
def test_a_bad_line_is_named(line: bytes, error: str) -> None:
    data = b'{"text": "fine"}\n' + line + b'\n{"text": "also fine"}\n'
    root, blocks = imported(data, TINY)
    with pytest.raises(InvalidArgumentError, match=error):
        dataset_documents(root, blocks)
    ref = DocumentRef("line 2", root, 17, 17 + len(line))
    with pytest.raises(InvalidArgumentError, match=error):
        read_document(ref, blocks, "text")


def test_empty_and_blank_files_are_refused() -> None:
    root, blocks = imported(b"", TINY)
    with pytest.raises(InvalidArgumentError, match=f"file {root} is empty"):
        dataset_documents(root, blocks)
    root, blocks = imported(b"\n  \n\r\n\n" * 10, TINY)
    with pytest.raises(InvalidArgumentError, match=f"file {root} has only blank lines"):
        dataset_documents(root, blocks)


def test_a_directory_of_text_files(tmp_path: Path) -> None:
    tree = tmp_path / "dataset"
    files = {
        "b.txt": "second ✓",
        "a.txt": "first",
        "sub/c.txt": "日本語 " * 40,
        "sub/deeper/d.txt": "deep",
        "sub/empty.txt": "",
        "notes.txt/e.txt": "a directory named like a text file is still a directory",
    }
    for path, text in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text, encoding="utf-8")
    (tree / "data.bin").write_bytes(b"\xff\xfe" * 100)
    (tree / "README.md").write_text("ignored")
    (tree / "sub" / "deeper" / "x.jsonl").write_text('{"text": "ignored"}\n')
    blocks = Blocks()
    root = import_directory(tree, blocks.put, TINY).cid
    documents = dataset_documents(root, blocks, text_field="ignored for directories")
    assert [ref.name for ref, _ in documents] == sorted(files)
    for ref, text in documents:
        assert text == files[ref.name]
        assert (ref.start, ref.end) == (0, len(text.encode()))
        assert read_document(ref, blocks, None) == text
    big = next(ref for ref, _ in documents if ref.name == "sub/c.txt")
    assert big.file.codec == DAG_PB, "a text file of several blocks"
    blocks.fetched.clear()
    dataset_documents(root, blocks)
    for cid in [root, *(ref.file for ref, _ in documents)]:
        assert blocks.fetched.count(cid) == 1, "a node read to learn its kind is not fetched again"
    data_bin = next(c for c, b in blocks.blocks.items() if b == b"\xff\xfe" * 8)
    assert data_bin not in blocks.fetched, "files that are not .txt are not read"


def test_directories_without_text_or_with_bad_text(tmp_path: Path) -> None:
    (tmp_path / "none" / "sub").mkdir(parents=True)
    (tmp_path / "none" / "data.json").write_text("{}")
    (tmp_path / "none" / "sub" / "text.TXT.gz").write_bytes(b"x")
    blocks = Blocks()
    root = import_directory(tmp_path / "none", blocks.put, TINY).cid
    with pytest.raises(InvalidArgumentError, match=f"directory {root} holds no .txt file"):
        dataset_documents(root, blocks)
    (tmp_path / "bad" / "sub").mkdir(parents=True)
    (tmp_path / "bad" / "ok.txt").write_text("fine")
    (tmp_path / "bad" / "sub" / "latin1.txt").write_bytes("café".encode("latin-1"))
    root = import_directory(tmp_path / "bad", blocks.put, TINY).cid
    with pytest.raises(
        InvalidArgumentError,
        match=r"sub/latin1.txt: not UTF-8 text \(unexpected end of data at byte 3\)",
    ):
        dataset_documents(root, blocks)
    leaf = CID.of(RAW, "café".encode("latin-1"))
    with pytest.raises(InvalidArgumentError, match=r"sub/latin1.txt: not UTF-8 text"):
        read_document(DocumentRef("sub/latin1.txt", leaf, 0, 4), blocks, None)


def test_the_document_names_are_exported() -> None:
    names = {"DocumentRef", "dataset_documents", "range_blocks", "read_document", "read_range"}
    assert names <= set(tokenweave.storage.__all__)
