"""BlockService: the dataset blocks a node keeps, copies, proves and reads.

It answers the coordinator's block messages (StoreBlock → BlockStored, FetchBlock → BlockStored,
AuditChallenge → AuditProof) without sending anything itself: the session sends the answers.
Reads (`read_block`) come from worker threads — the exchange serving peers, shards reading
datasets — and heal a corrupt block from peers on the daemon's event loop. Which peers hold a
block is asked of the coordinator through a `ProviderLookup` that the session connects while it
holds a lease; without one, nothing can be fetched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Protocol

from tokenweave.errors import TokenweaveError, UnavailableError
from tokenweave.storage import CID, CorruptBlockError
from tokenweave.storage._replicas import possession_proof
from tokenweave.v1 import nodes_pb2

logger = logging.getLogger(__name__)

#: Seconds a read of a corrupt block may spend healing it from peers.
HEAL_TIMEOUT_S = 30.0

#: Which peers hold `cid`: peer id → its multiaddrs (each ending in /p2p/<peer id>). Raises
#: `TokenweaveError` (e.g. `UnavailableError`) when it cannot be answered.
ProviderLookup = Callable[[CID], Awaitable[Mapping[str, Sequence[str]]]]


class BlockStorage(Protocol):
    """A node's blocks on disk (`tokenweave.storage.BlockStore`)."""

    def has(self, cid: CID) -> bool: ...
    def put(self, cid: CID, data: bytes) -> bool: ...
    def get(self, cid: CID) -> bytes: ...


class PeerExchange(Protocol):
    """Blocks from other nodes (`tokenweave.storage.BlockExchange`); blocking, verified."""

    @property
    def peer_id(self) -> str: ...
    def fetch(self, cid: CID, providers: Sequence[str]) -> bytes: ...


class DatasetBlocks(Protocol):
    """How a shard reads dataset blocks; both calls block and run in worker threads."""

    def read_block(self, cid: CID) -> bytes:
        """From this node's store (healed if corrupt); `NotFoundError` if it is not held."""
        ...

    def fetch_block(self, cid: CID) -> bytes:
        """From the other nodes that hold it, without keeping it."""
        ...


class BlockService:
    def __init__(self, store: BlockStorage, exchange: PeerExchange | None = None) -> None:
        self.store = store
        #: Set once the exchange exists (it serves blocks by calling `read_block`).
        self.exchange = exchange
        self._loop: asyncio.AbstractEventLoop | None = None
        self._providers: ProviderLookup | None = None
        self._healing: set[asyncio.Task[None]] = set()

    # -- lifecycle (driven by the daemon and its sessions) ------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Heal and fetch on `loop` (the daemon's) when called from worker threads."""
        self._loop = loop

    def connect(self, providers: ProviderLookup) -> None:
        """A session holds a lease: peers can be found through `providers`."""
        self._providers = providers

    async def disconnect(self) -> None:
        """The session ended: stop healing (its provider lookups went with it)."""
        self._providers = None
        healing, self._healing = self._healing, set()
        for task in healing:
            task.cancel()
        await asyncio.gather(*healing, return_exceptions=True)

    @property
    def healing(self) -> frozenset[asyncio.Task[None]]:
        """Heals started by failed audits and still running."""
        return frozenset(self._healing)

    # -- answers to the coordinator -----------------------------------------------------------

    async def keep(self, block: nodes_pb2.StoreBlock) -> nodes_pb2.BlockStored:
        """Store a dataset block placed on this node, and say whether it worked."""
        try:
            await asyncio.to_thread(self.store.put, CID.parse(block.cid), block.data)
            return nodes_pb2.BlockStored(cid=block.cid, ok=True)
        except TokenweaveError as exc:
            return nodes_pb2.BlockStored(cid=block.cid, ok=False, error=exc.message)
        except OSError as exc:
            logger.error("could not store block %s: %s", block.cid, exc)
            return nodes_pb2.BlockStored(cid=block.cid, ok=False, error=f"disk error: {exc}")

    async def copy(self, request: nodes_pb2.FetchBlock) -> nodes_pb2.BlockStored:
        """Fetch a block from the peers that hold it (a repair), keep it, and say so."""
        try:
            cid = CID.parse(request.cid)
            if not self.store.has(cid):
                data = await asyncio.to_thread(self._exchange().fetch, cid, list(request.providers))
                await asyncio.to_thread(self.store.put, cid, data)
            answer = nodes_pb2.BlockStored(cid=request.cid, ok=True)
        except TokenweaveError as exc:
            answer = nodes_pb2.BlockStored(cid=request.cid, ok=False, error=exc.message)
        except OSError as exc:
            answer = nodes_pb2.BlockStored(cid=request.cid, ok=False, error=f"disk error: {exc}")
        if not answer.ok:
            logger.warning("could not copy block %s: %s", request.cid, answer.error)
        return answer

    async def prove(self, audit: nodes_pb2.AuditChallenge) -> nodes_pb2.AuditProof:
        """Answer an audit from this node's own disk: a missing or corrupt block fails it
        (a corrupt one is healed from peers afterwards, and the coordinator copies it again)."""
        proof, error = b"", ""
        try:
            cid = CID.parse(audit.cid)
            proof = possession_proof(audit.nonce, await asyncio.to_thread(self.store.get, cid))
        except CorruptBlockError as exc:
            error = exc.message
            task = asyncio.create_task(self._heal_quietly(cid))
            self._healing.add(task)
            task.add_done_callback(self._healing.discard)
        except TokenweaveError as exc:
            error = exc.message
        except OSError as exc:
            error = f"disk error: {exc}"
        return nodes_pb2.AuditProof(cid=audit.cid, nonce=audit.nonce, proof=proof, error=error)

    # -- reading blocks -----------------------------------------------------------------------

    def read_block(self, cid: CID) -> bytes:
        """A block from this node's store, healed from peers if it is corrupt on disk.

        Called from worker threads (the exchange serving peers, shard runs), never from the
        event loop: healing asks the coordinator for providers on the loop and waits.
        """
        try:
            return self.store.get(cid)
        except CorruptBlockError as exc:
            if self._loop is None:
                raise
            logger.warning("%s; healing it from peers", exc.message)
            try:
                return self._on_loop(self.heal(cid))
            except (TokenweaveError, TimeoutError) as heal_error:
                raise CorruptBlockError(
                    f"{exc.message}; healing it failed: {heal_error}"
                ) from heal_error

    def fetch_block(self, cid: CID) -> bytes:
        """`fetch_from_peers` from a worker thread."""
        return self._on_loop(self.fetch_from_peers(cid))

    async def fetch_from_peers(self, cid: CID) -> bytes:
        """`cid` from the other nodes that hold it (asked of the coordinator), verified."""
        if self._providers is None:
            raise UnavailableError("not connected to a coordinator: no providers to ask")
        exchange = self._exchange()
        holders = await self._providers(cid)
        me = exchange.peer_id
        addrs = [a for peer, multiaddrs in holders.items() if peer != me for a in multiaddrs]
        return await asyncio.to_thread(exchange.fetch, cid, addrs)

    async def heal(self, cid: CID) -> bytes:
        """Fetch `cid` from the other nodes that hold it, verify it and store it again."""
        data = await self.fetch_from_peers(cid)
        await asyncio.to_thread(self.store.put, cid, data)
        logger.info("block %s healed from a peer", cid)
        return data

    async def _heal_quietly(self, cid: CID) -> None:
        try:
            await self.heal(cid)
        except TokenweaveError as exc:
            logger.warning("could not heal block %s: %s", cid, exc)

    def _on_loop(self, coroutine: Coroutine[Any, Any, bytes]) -> bytes:
        """Run `coroutine` on the daemon's event loop from a worker thread, and wait for it."""
        if self._loop is None:
            coroutine.close()
            raise UnavailableError("the node is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(HEAL_TIMEOUT_S)

    def _exchange(self) -> PeerExchange:
        if self.exchange is None:
            raise UnavailableError("the block exchange is not started")
        return self.exchange
