"""DatasetReader: turns a dataset's root CID into a job's documents.

The coordinator reads the dataset once over libp2p (every block checked against its CID) to
tokenize it and plan the windows, as it would inline texts. It does not send the texts on: each
document keeps its place in the dataset (file CID and byte range), and nodes read their shards'
documents themselves, from their own disk where they hold the blocks and from peers otherwise.
Every shard also records the nodes that held all of its blocks, and placement prefers them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from tokenweave.coordinator._datasets import DatasetIndex
from tokenweave.errors import FailedPreconditionError
from tokenweave.storage import CID, DAG_PB, BlockExchange, dataset_documents, range_blocks
from tokenweave.workloads import DocumentInput, DocumentSource

#: JSON Lines field read when a job does not name one.
DEFAULT_TEXT_FIELD = "text"


@dataclass(frozen=True, slots=True)
class DatasetDocuments:
    documents: tuple[DocumentInput, ...]
    #: Block → the nodes on record as holding it.
    holders: Mapping[str, frozenset[str]]


class DatasetReader:
    """Reads datasets from the nodes through a libp2p host of its own, started on first use."""

    def __init__(self, index: DatasetIndex) -> None:
        self._index = index
        self._exchange: BlockExchange | None = None
        self._lock = threading.Lock()

    def _started(self) -> BlockExchange:
        with self._lock:
            if self._exchange is None:
                self._exchange = BlockExchange(timeout=30).start()
            return self._exchange

    def close(self) -> None:
        with self._lock:
            if self._exchange is not None:
                self._exchange.stop()
                self._exchange = None

    async def documents(self, root: str, text_field: str) -> DatasetDocuments:
        """The documents of dataset `root` with their texts and where each one lives."""
        _, blocks = await self._index.status(root)  # NotFoundError for an unknown root
        holders = {cid: frozenset(nodes) for cid, nodes in blocks}
        addresses = await self._index.peer_addresses()
        field = text_field or DEFAULT_TEXT_FIELD
        return await asyncio.to_thread(self._read, CID.parse(root), field, holders, addresses)

    def _read(
        self,
        root: CID,
        text_field: str,
        holders: Mapping[str, frozenset[str]],
        addresses: Mapping[str, tuple[str, ...]],
    ) -> DatasetDocuments:
        exchange = self._started()
        interior: dict[CID, bytes] = {}  # kept to list each document's blocks without refetching

        def source(cid: CID) -> bytes:
            if cid in interior:
                return interior[cid]
            providers = [a for n in sorted(holders.get(str(cid), ())) for a in addresses.get(n, ())]
            if not providers:
                raise FailedPreconditionError(
                    f"no connected node holds block {cid} of the dataset; it cannot be read now"
                )
            data = exchange.fetch(cid, providers)
            if cid.codec == DAG_PB:
                interior[cid] = data
            return data

        documents = []
        for ref, text in dataset_documents(root, source, text_field):
            inline = ref.file == root  # one JSON Lines file; else one .txt file per document
            where = DocumentSource(
                file=str(ref.file),
                start=ref.start,
                end=ref.end,
                text_field=text_field if inline else "",
                blocks=tuple(str(b) for b in range_blocks(ref.file, source, ref.start, ref.end)),
            )
            documents.append(DocumentInput(ref.name, text, where))
        return DatasetDocuments(tuple(documents), holders)
