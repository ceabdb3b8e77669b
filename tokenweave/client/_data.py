"""Datasets in the SDK: upload a file or folder as a UnixFS DAG, fetch it back over libp2p."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tokenweave.client._connection import Connection
from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.storage import (
    CID,
    EXPORT_LIMITS,
    RAW,
    Block,
    DagLimits,
    DagNode,
    DagShape,
    export,
    import_directory,
    import_file,
    profile_named,
)
from tokenweave.v1 import data_pb2


@dataclass(frozen=True, slots=True)
class PutResult:
    root: str
    blocks: int
    bytes: int
    #: The fewest copies any block has; below `target_replicas` when fewer nodes are online.
    min_replicas: int
    #: The copies the coordinator keeps of every block (0: a coordinator too old to say).
    target_replicas: int = 0


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    root: str
    name: str
    size: int
    blocks: int
    #: The copies the coordinator keeps of every block (0: not told, as in `datasets()`).
    target_replicas: int = 0


@dataclass(frozen=True, slots=True)
class BlockReplicas:
    cid: str
    #: Providers connected now.
    replicas: int
    node_ids: tuple[str, ...]
    #: Providers on record that are not connected (within the repair grace period, or gone).
    offline_node_ids: tuple[str, ...] = ()


def import_path(path: Path, profile: str) -> tuple[DagNode, list[Block]]:
    """The DAG of a file or folder, built locally: its root and every block, leaves first."""
    blocks: list[Block] = []
    chosen = profile_named(profile)
    if path.is_dir():
        root = import_directory(path, blocks.append, chosen)
    elif path.is_file():
        with path.open("rb") as f:
            root = import_file(f, blocks.append, chosen)
    else:
        raise InvalidArgumentError(f"{path} is not a file or directory")
    return root, blocks


DEFAULT_PROFILE = "unixfs-v1-2025"
#: The JSON Lines fields `import_documents` writes each document's name and text to.
NAME_FIELD = "name"
TEXT_FIELD = "text"


def import_documents(
    documents: Iterable[tuple[str, str]], profile: str
) -> tuple[DagNode, list[Block]]:
    """The DAG of a JSON Lines file holding `documents`, one {"name", "text"} object a line,
    built locally: how the SDK streams inputs too large for one message."""
    data = b"".join(
        json.dumps({NAME_FIELD: name, TEXT_FIELD: text}, ensure_ascii=False).encode() + b"\n"
        for name, text in documents
    )
    blocks: list[Block] = []
    root = import_file(io.BytesIO(data), blocks.append, profile_named(profile))
    return root, blocks


def upload_requests(
    root: DagNode, blocks: list[Block], name: str, progress: Callable[[int], None]
) -> Iterator[data_pb2.PutBlocksRequest]:
    seen: set[CID] = set()
    for block in blocks:
        if block.cid in seen:
            continue
        seen.add(block.cid)
        yield data_pb2.PutBlocksRequest(
            block=data_pb2.DataBlock(cid=str(block.cid), data=block.data)
        )
        progress(len(block.data))
    yield data_pb2.PutBlocksRequest(
        finish=data_pb2.PutFinish(root=str(root.cid), name=name, size=root.filesize)
    )


def download(
    root: str,
    destination: Path,
    providers: Callable[[str], list[str]],
    progress: Callable[[int], None] = lambda n: None,
    limits: DagLimits = EXPORT_LIMITS,
    max_file_bytes: int | None = None,
) -> DagShape:
    """Fetch the DAG from the nodes that hold it, verifying every block, and write it out;
    `progress` gets the bytes of file data in each leaf as it arrives.

    The DAG's structure is fetched and measured first: one over `limits`, over `max_file_bytes`
    of files, or whose declared sizes disagree with its blocks is refused before anything is
    written, and no file gets more bytes than the DAG declares for it."""
    cid = CID.parse(root)

    from tokenweave.storage import (
        BlockExchange,  # libp2p and trio: only downloads need them
        Prefetcher,
    )

    with BlockExchange() as exchange:

        def fetch(block: CID) -> bytes:
            addrs = providers(str(block))
            if not addrs:
                raise NotFoundError(f"no node holds block {block}")
            return exchange.fetch(block, addrs)

        with Prefetcher(fetch) as ahead:  # leaves come a few at a time, ahead of the walk

            def source(block: CID) -> bytes:
                data = ahead(block)
                if block.codec == RAW:
                    progress(len(data))
                return data

            return export(cid, source, destination, limits, max_file_bytes)


class DatasetCalls(Connection):
    """The DataService calls of `Client`: store, locate, fetch and list datasets."""

    def put(
        self,
        path: Path,
        *,
        profile: str = DEFAULT_PROFILE,
        name: str | None = None,
        progress: Callable[[int], None] = lambda n: None,
    ) -> PutResult:
        """Store a file or folder on the network; returns its root CID and replica count."""
        root, blocks = import_path(path, profile)
        return self._put_blocks(upload_requests(root, blocks, name or path.name, progress))

    def _put_blocks(self, requests: Iterator[data_pb2.PutBlocksRequest]) -> PutResult:
        response = self._call(lambda: self._data.PutBlocks(requests, timeout=self.timeout * 10))
        return PutResult(
            response.root,
            response.blocks,
            response.bytes,
            response.min_replicas,
            response.target_replicas,
        )

    def providers(self, cid: str) -> list[str]:
        """Multiaddrs of the nodes holding a block."""
        response = self._call(
            lambda: self._data.GetProviders(
                data_pb2.GetProvidersRequest(cid=cid), timeout=self.timeout
            )
        )
        return [a for p in response.providers for a in p.multiaddrs]

    def get(
        self, cid: str, destination: Path, *, progress: Callable[[int], None] = lambda n: None
    ) -> None:
        """Fetch a dataset from the nodes over libp2p, checking every block, into `destination`;
        `progress` is called with the bytes of file data in each block fetched."""
        download(cid, destination, self.providers, progress)

    def datasets(self) -> list[DatasetInfo]:
        response = self._call(
            lambda: self._data.ListDatasets(data_pb2.ListDatasetsRequest(), timeout=self.timeout)
        )
        return [DatasetInfo(d.root, d.name, d.size, d.blocks) for d in response.datasets]

    def dataset_status(self, root: str) -> tuple[DatasetInfo, list[BlockReplicas]]:
        response = self._call(
            lambda: self._data.DatasetStatus(
                data_pb2.DatasetStatusRequest(root=root), timeout=self.timeout
            )
        )
        d = response.dataset
        info = DatasetInfo(d.root, d.name, d.size, d.blocks, response.target_replicas)
        return info, [
            BlockReplicas(b.cid, b.replicas, tuple(b.node_ids), tuple(b.offline_node_ids))
            for b in response.blocks
        ]
