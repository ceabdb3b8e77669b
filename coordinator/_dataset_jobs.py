"""DatasetReader: turns a dataset's root CID into a job's documents.

The coordinator reads the dataset once over libp2p (every block checked against its CID) to
tokenize it and plan the windows, as it would inline texts. It does not send the texts on: each
document keeps its place in the dataset (file CID and byte range), and nodes read their shards'
documents themselves, from their own disk where they hold the blocks and from peers otherwise.
Every shard also records the nodes that held all of its blocks, and placement prefers them.

Before reading, the dataset's structure is measured (`measure_dag`): a DAG that expands past
`DATASET_LIMITS` (a block linked a million times describes a terabyte in a megabyte) is refused
with INVALID_ARGUMENT before any document is read. A read stops between blocks, and its fetch in
flight is cut short, when the call that started it is cancelled or times out, or the reader
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from tokenweave import tensors
from tokenweave.coordinator._datasets import DatasetIndex
from tokenweave.errors import FailedPreconditionError
from tokenweave.storage import (
    CID,
    DAG_PB,
    CancelFlag,
    DagLimits,
    ReadCancelledError,
    dataset_documents,
    dataset_files,
    measure_dag,
    range_blocks,
    read_file,
)
from tokenweave.workloads import DocumentInput, DocumentSource

if TYPE_CHECKING:
    from tokenweave.storage import BlockExchange

T = TypeVar("T")
BlockSource = Callable[[CID], bytes]

#: The files of a dataset of tensors.
TENSOR_FILES = (".npy", ".npz")

#: JSON Lines field read when a job does not name one.
DEFAULT_TEXT_FIELD = "text"

#: What a job may read of a dataset: as many bytes as a job's message may carry inline (256 MiB),
#: 100,000 links (a job has at most 10,000 documents), 32 levels, 16,384 links per node.
DATASET_LIMITS = DagLimits(max_bytes=256 << 20, max_links=100_000, max_depth=32, max_fanout=16_384)

#: Seconds one block fetch may take.
FETCH_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class DatasetDocuments:
    documents: tuple[DocumentInput, ...]
    #: Block → the nodes on record as holding it.
    holders: Mapping[str, frozenset[str]]


class DatasetReader:
    """Reads datasets from the nodes through a libp2p host of its own, started on first use."""

    def __init__(
        self,
        index: DatasetIndex,
        limits: DagLimits = DATASET_LIMITS,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
    ) -> None:
        self._index = index
        self._limits = limits
        self._fetch_timeout_s = fetch_timeout_s
        self._exchange: BlockExchange | None = None
        self._lock = threading.Lock()
        self._reads: set[CancelFlag] = set()
        self._closed = False

    @property
    def reading(self) -> int:
        """Reads whose thread is still running."""
        with self._lock:
            return len(self._reads)

    def _started(self) -> BlockExchange:
        with self._lock:
            if self._closed:
                raise ReadCancelledError("the coordinator is shutting down")
            if self._exchange is None:
                # libp2p loads here, on the first dataset job, not at every start.
                from tokenweave.storage import BlockExchange

                self._exchange = BlockExchange(timeout=self._fetch_timeout_s).start()
            return self._exchange

    def cancel_reads(self) -> None:
        """Stop the reads in progress, and refuse new ones (call it before the server's grace
        period: a read does not need one)."""
        with self._lock:
            self._closed = True
            reads = list(self._reads)
        for flag in reads:
            flag.cancel("the coordinator is shutting down")

    def close(self) -> None:
        """Cancel the reads in progress and stop the libp2p host; later reads are refused."""
        self.cancel_reads()
        with self._lock:
            if self._exchange is not None:
                self._exchange.stop()
                self._exchange = None

    async def documents(self, root: str, text_field: str, name_field: str = "") -> DatasetDocuments:
        """The documents of dataset `root` with their texts and where each one lives (JSON Lines:
        the text in `text_field`, the name in `name_field` where a line has it).

        Cancelling the caller stops the read: it waits for the reading thread, which stops at its
        next block (a fetch in flight is cut short), before it lets the cancellation through.
        """
        field = text_field or DEFAULT_TEXT_FIELD

        def read(source: BlockSource, root: CID) -> DatasetDocuments:
            # Interior blocks fetched here are kept: the limits bound them, the read needs them.
            measure_dag(root, source, self._limits, include=_read_by_jobs)
            documents = []
            for ref, text in dataset_documents(root, source, field, name_field):
                inline = ref.file == root  # one JSON Lines file; else one .txt file per document
                blocks = range_blocks(ref.file, source, ref.start, ref.end)
                where = DocumentSource(
                    file=str(ref.file),
                    start=ref.start,
                    end=ref.end,
                    text_field=field if inline else "",
                    blocks=tuple(str(b) for b in blocks),
                )
                documents.append(DocumentInput(ref.name, text, where))
            return DatasetDocuments(tuple(documents), holders)

        holders = await self._holders(root)
        return await self._read(root, holders, read)

    async def tensors(self, root: str) -> DatasetDocuments:
        """The requests of a dataset of tensors: one per `.npy` file (its array, named "") or
        `.npz` archive (its arrays, by member), in path order, each packed as a TensorMap (to
        plan it) with its place in the dataset (nodes read it there)."""

        def read(source: BlockSource, root: CID) -> DatasetDocuments:
            measure_dag(root, source, self._limits, include=_tensor_file)
            documents = tuple(
                DocumentInput(
                    path,
                    "",
                    DocumentSource(
                        file=str(file),
                        start=0,
                        end=len(data),
                        blocks=tuple(str(b) for b in range_blocks(file, source, 0, len(data))),
                    ),
                    data=tensors.pack(tensors.load_file(path, data)),
                )
                for path, file, data in dataset_files(root, source, TENSOR_FILES, "tensors.npz")
            )
            return DatasetDocuments(documents, holders)

        holders = await self._holders(root)
        return await self._read(root, holders, read)

    async def file(self, root: str, max_bytes: int) -> bytes:
        """The bytes of the file `root` (a model's), read from the nodes: refused before it is
        read when its DAG declares more than `max_bytes`."""
        limits = dataclasses.replace(self._limits, max_bytes=max_bytes)

        def read(source: BlockSource, root: CID) -> bytes:
            measure_dag(root, source, limits)
            return b"".join(read_file(root, source))

        return await self._read(root, await self._holders(root), read)

    async def _holders(self, root: str) -> dict[str, frozenset[str]]:
        _, blocks = await self._index.status(root)  # NotFoundError for an unknown root
        return {cid: frozenset(nodes) for cid, nodes in blocks}

    async def _read(
        self,
        root: str,
        holders: Mapping[str, frozenset[str]],
        read: Callable[[BlockSource, CID], T],
    ) -> T:
        """`read(source, root)` in a worker thread, `source` fetching blocks from the nodes that
        hold them; cancellable (see `documents`)."""
        addresses = await self._index.peer_addresses()
        flag = CancelFlag()
        with self._lock:
            if self._closed:
                flag.cancel("the coordinator is shutting down")
            self._reads.add(flag)
        run = asyncio.ensure_future(
            asyncio.to_thread(self._run, CID.parse(root), holders, addresses, flag, read)
        )
        run.add_done_callback(lambda _: self._forget(flag))
        try:
            return await asyncio.shield(run)
        except asyncio.CancelledError:
            flag.cancel("the request was cancelled")
            with contextlib.suppress(Exception):
                await run
            raise

    def _forget(self, flag: CancelFlag) -> None:
        with self._lock:
            self._reads.discard(flag)

    def _run(
        self,
        root: CID,
        holders: Mapping[str, frozenset[str]],
        addresses: Mapping[str, tuple[str, ...]],
        cancel: CancelFlag,
        read: Callable[[BlockSource, CID], T],
    ) -> T:
        cancel.check()
        exchange = self._started()
        interior: dict[CID, bytes] = {}  # kept to list each document's blocks without refetching

        def source(cid: CID) -> bytes:
            cancel.check()
            if cid in interior:
                return interior[cid]
            providers = [a for n in sorted(holders.get(str(cid), ())) for a in addresses.get(n, ())]
            if not providers:
                raise FailedPreconditionError(
                    f"no connected node holds block {cid} of the dataset; it cannot be read now"
                )
            data = exchange.fetch(cid, providers, cancel)
            if cid.codec == DAG_PB:
                interior[cid] = data
            return data

        return read(source, root)


def _tensor_file(name: str) -> bool:
    return name.endswith(TENSOR_FILES)


def _read_by_jobs(name: str) -> bool:
    """The files of a dataset folder that a job reads (subfolders are always walked)."""
    return name.endswith(".txt")
