"""DataService: uploads placed on nodes by rendezvous hashing, provider lookups, status.

An upload is recorded as a dataset only when its DAG checks out: the dag-pb blocks of the upload
are kept until its finish message, and the DAG is measured from them (`measure_dag`): within
`limits`, its declared sizes consistent with its blocks, every interior node among the uploaded
blocks, and the size the client gives equal to the bytes of files the DAG declares. `data get`
then writes no more than that size.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from tokenweave.coordinator._auth import Principal, current_principal
from tokenweave.coordinator._custody import mint_challenges
from tokenweave.coordinator._datasets import DatasetIndex
from tokenweave.coordinator._lanes import Lanes
from tokenweave.coordinator._servicers import Context
from tokenweave.coordinator._views import StoreBlock
from tokenweave.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    ResourceExhaustedError,
    UnavailableError,
)
from tokenweave.storage import CID, DAG_PB, EXPORT_LIMITS, MAX_BLOCK_BYTES, DagLimits, measure_dag
from tokenweave.storage._replicas import ranking
from tokenweave.v1 import data_pb2, data_pb2_grpc

logger = logging.getLogger(__name__)

#: Seconds a node gets to confirm it stored a block.
STORE_PATIENCE_S = 30.0

#: dag-pb bytes one upload may hold (kept until its finish message to check its DAG). A 64 GiB
#: file in 1 MiB chunks has about 3 MB of them; a folder of 10,000 files, about 1 MB.
MAX_INTERIOR_BYTES = 64 << 20

#: Longest dataset name, in UTF-8 bytes.
MAX_NAME_BYTES = 1024


#: Bytes of datasets one client may have uploaded, unless the coordinator says otherwise.
DEFAULT_MAX_STORED_BYTES = 10 * 1024**3


def _own(principal: Principal) -> str | None:
    """Whose datasets a listing shows: the caller's own, or everyone's to an admin."""
    return None if principal.admin else principal.client_id


class DataServicer(data_pb2_grpc.DataServiceServicer):
    def __init__(
        self,
        lanes: Lanes,
        index: DatasetIndex,
        replicas: int,
        limits: DagLimits = EXPORT_LIMITS,
        max_stored_bytes: int = DEFAULT_MAX_STORED_BYTES,
    ) -> None:
        self._lanes = lanes
        self._index = index
        self._replicas = replicas
        self._limits = limits
        #: Bytes of datasets one client may have uploaded (blocks land on operators' disks).
        self._max_stored_bytes = max_stored_bytes

    async def _place(self, cid: CID, data: bytes) -> int:
        """Store the block on `replicas` connected nodes, in its rendezvous order: a node that
        refuses it (full, failing disk) passes its turn to the next. Returns the copies made."""
        candidates = ranking(cid, self._lanes.connected())
        if not candidates:
            raise UnavailableError("no node is connected to store blocks on")
        text = str(cid)
        message = StoreBlock(text, data)
        stored: list[str] = []
        errors: list[str] = []
        while candidates and len(stored) < self._replicas:
            wanted = self._replicas - len(stored)
            batch, candidates = candidates[:wanted], candidates[wanted:]
            answers = await asyncio.gather(
                *(self._lanes.keep_block(n, message, STORE_PATIENCE_S) for n in batch)
            )
            for node, error in zip(batch, answers, strict=True):
                if error:
                    errors.append(error)
                    logger.warning("block %s not stored on %s: %s", cid, node, error)
                else:
                    stored.append(node)
        await self._index.add_providers(text, stored, challenges=mint_challenges(data))
        if not stored:
            raise ResourceExhaustedError(f"no node could store block {cid}: {'; '.join(errors)}")
        return len(stored)

    async def PutBlocks(
        self, request_iterator: AsyncIterator[data_pb2.PutBlocksRequest], context: Context
    ) -> data_pb2.PutBlocksResponse:
        cids: list[str] = []
        total = 0
        fewest = self._replicas
        owner = current_principal().client_id
        stored = await self._index.stored_bytes(owner)
        interior: dict[CID, bytes] = {}
        interior_bytes = 0
        sizes: dict[CID, int] = {}
        async for request in request_iterator:
            if request.WhichOneof("message") == "finish":
                finish = request.finish
                root_cid = CID.parse(finish.root)
                root = str(root_cid)
                if root not in cids:
                    raise InvalidArgumentError(f"root {root} was not among the uploaded blocks")
                if len(finish.name.encode()) > MAX_NAME_BYTES:
                    raise InvalidArgumentError(
                        f"the dataset name is {len(finish.name.encode()):,} bytes; the limit is "
                        f"{MAX_NAME_BYTES}"
                    )
                declared = await asyncio.to_thread(self._file_bytes, root_cid, interior, sizes)
                if finish.size != declared:
                    raise InvalidArgumentError(
                        f"the upload gives its size as {finish.size:,} bytes but its DAG "
                        f"declares {declared:,}; nothing recorded"
                    )
                await self._index.record(root, finish.name, finish.size, cids, owner)
                return data_pb2.PutBlocksResponse(
                    root=root,
                    blocks=len(cids),
                    bytes=total,
                    min_replicas=fewest,
                    target_replicas=self._replicas,
                )
            block = request.block
            cid = CID.parse(block.cid)
            if len(block.data) > MAX_BLOCK_BYTES:
                raise ResourceExhaustedError(
                    f"block {cid} is {len(block.data)} bytes; blocks are at most {MAX_BLOCK_BYTES}"
                )
            if not cid.verify(block.data):
                raise InvalidArgumentError(f"block {cid}: the bytes do not hash to the CID")
            if stored + total + len(block.data) > self._max_stored_bytes:
                raise ResourceExhaustedError(
                    f"client {owner or '(none)'} stores {stored:,} bytes of datasets; this upload "
                    f"would pass the quota of {self._max_stored_bytes:,} (coordinator "
                    "--max-stored-bytes); nothing recorded"
                )
            sizes[cid] = len(block.data)
            if cid.codec == DAG_PB and cid not in interior:
                interior_bytes += len(block.data)
                if interior_bytes > MAX_INTERIOR_BYTES:
                    raise ResourceExhaustedError(
                        f"the upload holds more than {MAX_INTERIOR_BYTES:,} bytes of dag-pb "
                        "blocks; nothing recorded"
                    )
                interior[cid] = block.data
            fewest = min(fewest, await self._place(cid, block.data))
            cids.append(str(cid))
            total += len(block.data)
        raise FailedPreconditionError(
            f"the upload ended after {len(cids)} blocks without a finish message; nothing recorded"
        )

    def _file_bytes(self, root: CID, interior: dict[CID, bytes], sizes: dict[CID, int]) -> int:
        """The bytes of files the DAG `root` declares, measured from the uploaded blocks."""
        if root.codec != DAG_PB:
            return sizes[root]

        def source(cid: CID) -> bytes:
            try:
                return interior[cid]
            except KeyError:
                raise InvalidArgumentError(
                    f"node {cid} of the DAG was not among the uploaded blocks; nothing recorded"
                ) from None

        return measure_dag(root, source, self._limits).file_bytes

    async def GetProviders(
        self, request: data_pb2.GetProvidersRequest, context: Context
    ) -> data_pb2.GetProvidersResponse:
        cid = str(CID.parse(request.cid))
        providers = await self._index.providers(cid)
        return data_pb2.GetProvidersResponse(
            providers=[
                data_pb2.Provider(
                    node_id=p.node_id, peer_id=p.peer_id, multiaddrs=list(p.multiaddrs)
                )
                for p in providers
            ]
        )

    async def ListDatasets(
        self, request: data_pb2.ListDatasetsRequest, context: Context
    ) -> data_pb2.ListDatasetsResponse:
        return data_pb2.ListDatasetsResponse(
            datasets=[
                data_pb2.Dataset(root=d.root, name=d.name, size=d.size, blocks=d.blocks)
                for d in await self._index.datasets(_own(current_principal()))
            ]
        )

    async def DatasetStatus(
        self, request: data_pb2.DatasetStatusRequest, context: Context
    ) -> data_pb2.DatasetStatusResponse:
        view, blocks = await self._index.status(str(CID.parse(request.root)))
        connected = set(self._lanes.connected())
        return data_pb2.DatasetStatusResponse(
            dataset=data_pb2.Dataset(
                root=view.root, name=view.name, size=view.size, blocks=view.blocks
            ),
            blocks=[
                data_pb2.BlockStatus(
                    cid=cid,
                    replicas=len(online := [n for n in nodes if n in connected]),
                    node_ids=online,
                    offline_node_ids=[n for n in nodes if n not in connected],
                )
                for cid, nodes in blocks
            ],
            target_replicas=self._replicas,
        )
