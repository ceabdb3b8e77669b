"""NodeResources: the models a task is lent, and dataset documents read from blocks (own first,
then peers)."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest

from tokenweave.errors import FailedPreconditionError, NotFoundError
from tokenweave.node._runtime import NodeResources
from tokenweave.storage import CID, Block, ImportProfile, import_file
from tokenweave.workloads import DocumentSource

TEXT = "alpha be gamma delta epsilon ze eta theta iota kappa lambda mu nu xi omicron pi"


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


def _runner(sha256: str) -> Any:
    return SimpleNamespace(model=SimpleNamespace(sha256=sha256))


def test_dataset_documents_are_read_from_own_blocks_first_then_peers() -> None:
    root, blocks = _dataset()
    assert len(blocks) > 4
    own = dict(list(blocks.items())[: len(blocks) // 2])
    source = Blocks(own, blocks)
    resources = NodeResources({}, source)
    whole = DocumentSource(str(root), 0, len(TEXT))
    assert resources.read_document(whole, "document 0") == TEXT
    part = DocumentSource(str(root), 6, 14)
    assert resources.read_document(part, "document 1") == "be gamma"
    fetched = [cid for where, cid in source.reads if where == "peer"]
    assert fetched
    assert not set(fetched) & set(own)


def test_a_document_reads_each_block_once() -> None:
    root, blocks = _dataset()
    source = Blocks(blocks, {})
    NodeResources({}, source).read_document(DocumentSource(str(root), 0, len(TEXT)), "doc")
    reads = [cid for _, cid in source.reads]
    assert len(reads) == len(set(reads))


def test_a_model_is_lent_only_with_the_exact_hash() -> None:
    runner = _runner("abc")
    resources = NodeResources({"m": runner}, Blocks({}, {}))
    assert resources.model("m", "abc") is runner
    with pytest.raises(FailedPreconditionError, match="this node has abc"):
        resources.model("m", "def")
    with pytest.raises(FailedPreconditionError, match="no such model"):
        resources.model("other", "abc")
