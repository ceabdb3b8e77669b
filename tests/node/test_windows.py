"""ShardWindows: inline windows, and dataset windows read from blocks (own first, then peers)
with a fake tokenizer that turns each word into its length."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.node._windows import ShardWindows
from tokenweave.storage import CID, Block, ImportProfile, import_file
from tokenweave.v1 import nodes_pb2

TEXT = "alpha be gamma delta epsilon ze eta theta iota kappa lambda mu nu xi omicron pi"


class WordLengths:
    def __init__(self) -> None:
        self.encoded: list[str] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> Any:
        assert not add_special_tokens
        self.encoded.append(text)
        return SimpleNamespace(ids=[len(word) for word in text.split()])


class Blocks:
    """Own blocks and peers' blocks, as a DatasetBlocks."""

    def __init__(self, own: dict[CID, bytes], peers: dict[CID, bytes]) -> None:
        self.own, self.peers = own, peers
        self.reads: list[tuple[str, CID]] = []

    def read_block(self, cid: CID) -> bytes:
        self.reads.append(("own", cid))
        if cid not in self.own:
            raise NotFoundError(f"block {cid} is not in this store")
        return self.own[cid]

    def fetch_block(self, cid: CID) -> bytes:
        self.reads.append(("peer", cid))
        return self.peers[cid]


def _dataset() -> tuple[CID, dict[CID, bytes]]:
    blocks: list[Block] = []
    root = import_file(
        io.BytesIO(TEXT.encode()), blocks.append, ImportProfile("tiny", 16, max_links=4)
    )
    return root.cid, {b.cid: b.data for b in blocks}


def _assignment(file: CID, shard_id: str = "s1") -> nodes_pb2.ShardAssignment:
    assignment = nodes_pb2.ShardAssignment(shard_id=shard_id)
    assignment.sources.add(document=0, file=str(file), start=0, end=len(TEXT))
    assignment.sources.add(document=1, file=str(file), start=6, end=14)  # "be gamma"
    assignment.spans.add(document=0, start=0, end=3)
    assignment.spans.add(document=1, start=0, end=2)
    assignment.spans.add(document=0, start=14, end=16)
    return assignment


def test_inline_windows_are_decoded_from_uint32() -> None:
    assignment = nodes_pb2.ShardAssignment(shard_id="s1")
    assignment.windows.add(token_ids=np.array([1, 2, 70000], dtype="<u4").tobytes())
    assignment.windows.add(token_ids=b"")
    windows = ShardWindows(Blocks({}, {})).read(assignment, WordLengths(), "sha")  # type: ignore[arg-type]
    assert [w.tolist() for w in windows] == [[1, 2, 70000], []]
    assert all(w.dtype == np.int64 for w in windows)


def test_dataset_windows_read_own_blocks_first_then_peers() -> None:
    root, blocks = _dataset()
    assert len(blocks) > 4
    own = dict(list(blocks.items())[: len(blocks) // 2])
    source = Blocks(own, blocks)
    windows = ShardWindows(source).read(_assignment(root), WordLengths(), "sha")  # type: ignore[arg-type]
    assert [w.tolist() for w in windows] == [[5, 2, 5], [2, 5], [7, 2]]
    fetched = [cid for where, cid in source.reads if where == "peer"]
    assert fetched
    assert not set(fetched) & set(own)
    owned_reads = [cid for where, cid in source.reads if where == "own"]
    assert len(owned_reads) == len(set(owned_reads)), "a shard reads each block once"


def test_documents_are_tokenized_once_per_model_and_cached() -> None:
    root, blocks = _dataset()
    tokenizer, source = WordLengths(), Blocks(blocks, {})
    reader = ShardWindows(source, cache_size=2)
    reader.read(_assignment(root, "s1"), tokenizer, "sha")  # type: ignore[arg-type]
    reader.read(_assignment(root, "s2"), tokenizer, "sha")  # type: ignore[arg-type]
    assert tokenizer.encoded == [TEXT, "be gamma"]
    reader.read(_assignment(root, "s3"), tokenizer, "other model")  # type: ignore[arg-type]
    assert len(tokenizer.encoded) == 4


def test_a_span_without_its_source_is_refused() -> None:
    root, blocks = _dataset()
    assignment = _assignment(root)
    assignment.spans.add(document=7, start=0, end=1)
    with pytest.raises(InvalidArgumentError, match=r"no source for documents \[7\]"):
        ShardWindows(Blocks(blocks, {})).read(assignment, WordLengths(), "sha")  # type: ignore[arg-type]
