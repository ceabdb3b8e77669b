"""DataService: uploads placed on nodes by rendezvous hashing, provider lookups, status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

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
from tokenweave.storage import CID, MAX_BLOCK_BYTES
from tokenweave.storage._replicas import ranking
from tokenweave.v1 import data_pb2, data_pb2_grpc

logger = logging.getLogger(__name__)

#: Seconds a node gets to confirm it stored a block.
STORE_PATIENCE_S = 30.0


class DataServicer(data_pb2_grpc.DataServiceServicer):
    def __init__(self, lanes: Lanes, index: DatasetIndex, replicas: int) -> None:
        self._lanes = lanes
        self._index = index
        self._replicas = replicas

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
        async for request in request_iterator:
            if request.WhichOneof("message") == "finish":
                finish = request.finish
                root = str(CID.parse(finish.root))
                if root not in cids:
                    raise InvalidArgumentError(f"root {root} was not among the uploaded blocks")
                await self._index.record(root, finish.name, finish.size, cids)
                return data_pb2.PutBlocksResponse(
                    root=root, blocks=len(cids), bytes=total, min_replicas=fewest
                )
            block = request.block
            cid = CID.parse(block.cid)
            if len(block.data) > MAX_BLOCK_BYTES:
                raise ResourceExhaustedError(
                    f"block {cid} is {len(block.data)} bytes; blocks are at most {MAX_BLOCK_BYTES}"
                )
            if not cid.verify(block.data):
                raise InvalidArgumentError(f"block {cid}: the bytes do not hash to the CID")
            fewest = min(fewest, await self._place(cid, block.data))
            cids.append(str(cid))
            total += len(block.data)
        raise FailedPreconditionError(
            f"the upload ended after {len(cids)} blocks without a finish message; nothing recorded"
        )

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
                for d in await self._index.datasets()
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
        )
