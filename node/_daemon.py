"""NodeDaemon: registers with the coordinator, heartbeats, and runs the shards it is leased.

One connection is a *session*: challenge → signed Register → lease stream. When the session
breaks (coordinator restarted, network gone) the daemon starts a new one after a jittered
exponential backoff. On stop it hands back the shards it has not started, lets the running one
finish within the grace period, and closes the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from grpc import aio

from tokenweave import __version__
from tokenweave.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    TokenweaveError,
    UnavailableError,
)
from tokenweave.models import (
    EmbeddingSession,
    default_cache_dir,
    encode_document,
    load_prepared,
    prepare_model,
    windows_digest,
)
from tokenweave.node._config import NodeConfig
from tokenweave.node._hardware import detect_hardware
from tokenweave.node._identity import NodeIdentity
from tokenweave.node._runner import ShardRunner
from tokenweave.storage import (
    CID,
    BlockExchange,
    BlockStore,
    CorruptBlockError,
    DocumentRef,
    read_document,
)
from tokenweave.storage._replicas import possession_proof
from tokenweave.v1 import data_pb2, data_pb2_grpc, jobs_pb2, nodes_pb2, nodes_pb2_grpc

logger = logging.getLogger(__name__)

#: Registration answers that no retry can change: the daemon exits with the message.
REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
}
#: Heartbeats missed in a row before the session is given up.
HEARTBEAT_MISSES = 3


class RegistrationRefusedError(FailedPreconditionError):
    """The coordinator refused this node for a reason a retry cannot change."""


#: Seconds a stopping node waits for the coordinator to close the lease stream.
CLOSE_TIMEOUT_S = 10.0
#: Seconds a read of a corrupt block may spend healing it from peers.
HEAL_TIMEOUT_S = 30.0
#: Dataset documents whose token ids a node keeps for the next shard.
DOCUMENT_CACHE = 16


@dataclass
class _Reads:
    local: int = 0
    remote: int = 0


@dataclass
class _Session:
    call: aio.StreamStreamCall[nodes_pb2.LeaseRequest, nodes_pb2.LeaseResponse]
    queue: asyncio.Queue[nodes_pb2.ShardAssignment] = field(default_factory=asyncio.Queue)
    cancelled: set[str] = field(default_factory=set)
    running: str | None = None
    draining: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: Block copies and audit answers in progress.
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send(self, request: nodes_pb2.LeaseRequest) -> None:
        async with self.write_lock:
            await self.call.write(request)


class NodeDaemon:
    """Create with `await NodeDaemon.create(config)`, then `await run(stop_event)`."""

    def __init__(
        self,
        config: NodeConfig,
        identity: NodeIdentity,
        runners: dict[str, ShardRunner],
        speeds: dict[str, float],
        exchange: BlockExchange,
        store: BlockStore,
    ) -> None:
        self.config = config
        self.identity = identity
        self._runners = runners
        self._speeds = speeds
        self.exchange = exchange
        self.store = store
        self._registered = False
        self._hardware = detect_hardware()
        self.shards_done = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Token ids of recently read dataset documents (a long one spans many shards).
        self._documents: OrderedDict[tuple[str, int, int, str, str], npt.NDArray[np.int64]] = (
            OrderedDict()
        )
        self._data: data_pb2_grpc.DataServiceAsyncStub | None = None

    @classmethod
    async def create(cls, config: NodeConfig) -> NodeDaemon:
        identity = NodeIdentity.load_or_create(config.data_dir)
        cache = config.model_cache or default_cache_dir()
        runners: dict[str, ShardRunner] = {}
        speeds: dict[str, float] = {}
        for name in config.models:
            await asyncio.to_thread(prepare_model, name, cache)
            prepared = await asyncio.to_thread(load_prepared, name, cache)
            session = EmbeddingSession(
                prepared,
                providers=list(config.providers) or None,
                intra_op_threads=config.threads,
                batch_size=config.batch_size,
            )
            runner = ShardRunner(prepared, session)
            speeds[name] = await asyncio.to_thread(runner.calibrate)
            runners[name] = runner
            logger.info(
                "model %s (sha256 %s…) on %s: %.0f tokens/s",
                name,
                prepared.sha256[:12],
                runner.provider,
                speeds[name],
            )
        store = BlockStore(config.data_dir / "blocks", config.block_quota_bytes)
        daemon: NodeDaemon | None = None

        def serve_block(cid: CID) -> bytes:
            assert daemon is not None
            return daemon.read_block(cid)

        exchange = BlockExchange(serve_block, identity.private_key, config.p2p_listen)
        daemon = cls(config, identity, runners, speeds, exchange, store)
        await asyncio.to_thread(exchange.start)
        logger.info("serving blocks as %s on %s", exchange.peer_id, ", ".join(exchange.addrs))
        return daemon

    @property
    def speeds(self) -> dict[str, float]:
        return dict(self._speeds)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, reconnecting with jittered exponential backoff."""
        self._loop = asyncio.get_running_loop()
        try:
            await self._serve(stop)
        finally:
            await asyncio.to_thread(self.exchange.stop)

    async def _serve(self, stop: asyncio.Event) -> None:
        delay = self.config.backoff_initial_s
        while not stop.is_set():
            options = [
                ("grpc.max_receive_message_length", self.config.max_message_bytes),
                ("grpc.max_send_message_length", self.config.max_message_bytes),
            ]
            async with aio.insecure_channel(self.config.coordinator, options=options) as channel:
                self._registered = False
                try:
                    stub: nodes_pb2_grpc.NodeServiceAsyncStub
                    stub = nodes_pb2_grpc.NodeServiceStub(channel)
                    self._data = data_pb2_grpc.DataServiceStub(channel)
                    await self._session(stub, stop)
                except aio.AioRpcError as exc:
                    # Whatever ended an established session, a new one is worth trying.
                    logger.warning(
                        "coordinator %s: %s: %s",
                        self.config.coordinator,
                        exc.code().name,
                        exc.details(),
                    )
            if stop.is_set():
                break
            if self._registered:  # the last session worked: start backing off afresh
                delay = self.config.backoff_initial_s
            wait = random.uniform(0, delay)
            logger.info("reconnecting in %.1f s", wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            delay = min(delay * 2, self.config.backoff_max_s)
        logger.info("node stopped")

    async def _register(
        self, stub: nodes_pb2_grpc.NodeServiceAsyncStub
    ) -> nodes_pb2.RegisterResponse:
        address = self.identity.address
        challenge = await stub.GetChallenge(nodes_pb2.GetChallengeRequest(address=address))
        hw = self._hardware
        request = nodes_pb2.RegisterRequest(
            address=address,
            nonce=challenge.nonce,
            signature=self.identity.sign(challenge.message),
            hardware=jobs_pb2.Hardware(
                cpu_cores=int(str(hw["cpu_cores"])),
                memory_bytes=int(str(hw["memory_bytes"])),
                gpus=[
                    jobs_pb2.Gpu(name=str(g["name"]), memory_bytes=int(str(g["memory_bytes"])))
                    for g in hw["gpus"]  # type: ignore[attr-defined]
                ],
                providers=list(hw["providers"]),  # type: ignore[call-overload]
                platform=str(hw["platform"]),
            ),
            models=[
                jobs_pb2.NodeModel(
                    name=name, sha256=r.model.sha256, tokens_per_second=self._speeds[name]
                )
                for name, r in self._runners.items()
            ],
            max_inflight_shards=self.config.max_inflight_shards,
            version=__version__,
            peer_id=self.exchange.peer_id,
            multiaddrs=self.exchange.addrs,
        )
        return await stub.Register(request)

    async def _session(
        self, stub: nodes_pb2_grpc.NodeServiceAsyncStub, stop: asyncio.Event
    ) -> None:
        try:
            reg = await self._register(stub)
        except aio.AioRpcError as exc:
            if exc.code() in REFUSED:
                raise RegistrationRefusedError(
                    f"{self.config.coordinator} refused this node: {exc.details()}"
                ) from exc
            raise
        self._registered = True
        logger.info("registered with %s as %s", self.config.coordinator, reg.node_id)
        session = _Session(call=stub.Lease())
        session.idle.set()
        await session.send(
            nodes_pb2.LeaseRequest(
                hello=nodes_pb2.LeaseHello(node_id=reg.node_id, session_token=reg.session_token)
            )
        )
        heartbeat = asyncio.create_task(self._heartbeat(stub, reg))
        reader = asyncio.create_task(self._read(session))
        worker = asyncio.create_task(self._work(session))
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {heartbeat, reader, worker, stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                await self._drain(session, worker)
                # The coordinator ends the stream once it has applied everything sent.
                with contextlib.suppress(TimeoutError, aio.AioRpcError):
                    await asyncio.wait_for(asyncio.shield(reader), CLOSE_TIMEOUT_S)
                return
            for task in done:
                task.result()  # raise what ended the session
            raise aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                aio.Metadata(),
                aio.Metadata(),
                details="the coordinator closed the lease stream",
            )
        finally:
            background = (heartbeat, reader, worker, stopping, *session.tasks)
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, aio.AioRpcError):
                    await task
            session.call.cancel()

    async def _drain(self, session: _Session, worker: asyncio.Task[None]) -> None:
        """Hand back what has not started, finish what runs, close the stream."""
        session.draining.set()
        await self._release_queued(session)
        if session.running is not None:
            logger.info("finishing shard %s before exiting", session.running)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.idle.wait(), self.config.shutdown_grace_s)
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        if session.running is not None:
            session.queue.put_nowait(nodes_pb2.ShardAssignment(shard_id=session.running))
        await self._release_queued(session)
        await session.call.done_writing()

    @staticmethod
    async def _release_queued(session: _Session) -> None:
        queued = []
        while not session.queue.empty():
            queued.append(session.queue.get_nowait().shard_id)
        if queued:
            await session.send(
                nodes_pb2.LeaseRequest(release=nodes_pb2.ShardRelease(shard_ids=queued))
            )
            logger.info("handed back %d shards", len(queued))

    async def _heartbeat(
        self, stub: nodes_pb2_grpc.NodeServiceAsyncStub, reg: nodes_pb2.RegisterResponse
    ) -> None:
        interval = max(reg.heartbeat_interval_ms, 100) / 1000
        misses = 0
        while True:
            await asyncio.sleep(interval)
            try:
                await stub.Heartbeat(
                    nodes_pb2.HeartbeatRequest(
                        node_id=reg.node_id, session_token=reg.session_token
                    ),
                    timeout=interval * 2,
                )
                misses = 0
            except aio.AioRpcError as exc:
                misses += 1
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED or misses >= HEARTBEAT_MISSES:
                    raise
                logger.warning("heartbeat missed (%s); retrying", exc.code().name)

    async def _read(self, session: _Session) -> None:
        async for message in session.call:
            kind = message.WhichOneof("message")
            if kind == "assignment":
                session.queue.put_nowait(message.assignment)
            elif kind == "cancel":
                session.cancelled.add(message.cancel.shard_id)
            elif kind == "store":
                await self._keep(session, message.store)
            elif kind == "fetch":
                # Copies run beside the stream: a slow peer must not hold up assignments.
                session.tasks.add(asyncio.create_task(self._copy(session, message.fetch)))
            elif kind == "audit":
                session.tasks.add(asyncio.create_task(self._prove(session, message.audit)))
            elif kind == "ack" and not message.ack.accepted:
                logger.info("shard %s not counted: %s", message.ack.shard_id, message.ack.reason)

    async def _keep(self, session: _Session, block: nodes_pb2.StoreBlock) -> None:
        """Store a dataset block placed on this node, and say whether it worked."""
        if session.draining.is_set():
            return  # the coordinator learns from the closed stream
        try:
            await asyncio.to_thread(self.store.put, CID.parse(block.cid), block.data)
            answer = nodes_pb2.BlockStored(cid=block.cid, ok=True)
        except TokenweaveError as exc:
            answer = nodes_pb2.BlockStored(cid=block.cid, ok=False, error=exc.message)
        except OSError as exc:
            logger.error("could not store block %s: %s", block.cid, exc)
            answer = nodes_pb2.BlockStored(cid=block.cid, ok=False, error=f"disk error: {exc}")
        if not session.draining.is_set():
            await session.send(nodes_pb2.LeaseRequest(stored=answer))

    async def _copy(self, session: _Session, request: nodes_pb2.FetchBlock) -> None:
        """Fetch a block from the peers that hold it (a repair), keep it, and say so."""
        try:
            cid = CID.parse(request.cid)
            if not self.store.has(cid):
                data = await asyncio.to_thread(self.exchange.fetch, cid, list(request.providers))
                await asyncio.to_thread(self.store.put, cid, data)
            answer = nodes_pb2.BlockStored(cid=request.cid, ok=True)
        except TokenweaveError as exc:
            answer = nodes_pb2.BlockStored(cid=request.cid, ok=False, error=exc.message)
        except OSError as exc:
            answer = nodes_pb2.BlockStored(cid=request.cid, ok=False, error=f"disk error: {exc}")
        if not answer.ok:
            logger.warning("could not copy block %s: %s", request.cid, answer.error)
        if not session.draining.is_set():
            await session.send(nodes_pb2.LeaseRequest(stored=answer))

    async def _prove(self, session: _Session, audit: nodes_pb2.AuditChallenge) -> None:
        """Answer an audit from this node's own disk: a missing or corrupt block fails it
        (a corrupt one is healed from peers afterwards, and the coordinator copies it again)."""
        proof, error = b"", ""
        try:
            cid = CID.parse(audit.cid)
            proof = possession_proof(audit.nonce, await asyncio.to_thread(self.store.get, cid))
        except CorruptBlockError as exc:
            error = exc.message
            session.tasks.add(asyncio.create_task(self._heal_quietly(cid)))
        except TokenweaveError as exc:
            error = exc.message
        except OSError as exc:
            error = f"disk error: {exc}"
        if not session.draining.is_set():
            await session.send(
                nodes_pb2.LeaseRequest(
                    proof=nodes_pb2.AuditProof(
                        cid=audit.cid, nonce=audit.nonce, proof=proof, error=error
                    )
                )
            )

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
            except (TokenweaveError, TimeoutError, aio.AioRpcError) as heal_error:
                raise CorruptBlockError(
                    f"{exc.message}; healing it failed: {heal_error}"
                ) from heal_error

    def _on_loop(self, coroutine: Coroutine[Any, Any, bytes]) -> bytes:
        """Run `coroutine` on the daemon's event loop from a worker thread, and wait for it."""
        if self._loop is None:
            coroutine.close()
            raise UnavailableError("the node is not running")
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(HEAL_TIMEOUT_S)

    async def fetch_from_peers(self, cid: CID) -> bytes:
        """`cid` from the other nodes that hold it (asked of the coordinator), verified."""
        if self._data is None:
            raise UnavailableError("not connected to a coordinator: no providers to ask")
        reply = await self._data.GetProviders(
            data_pb2.GetProvidersRequest(cid=str(cid)), timeout=HEAL_TIMEOUT_S
        )
        me = self.exchange.peer_id
        providers = [a for p in reply.providers if p.peer_id != me for a in p.multiaddrs]
        result: bytes = await asyncio.to_thread(self.exchange.fetch, cid, providers)
        return result

    async def heal(self, cid: CID) -> bytes:
        """Fetch `cid` from the other nodes that hold it, verify it and store it again."""
        data = await self.fetch_from_peers(cid)
        await asyncio.to_thread(self.store.put, cid, data)
        logger.info("block %s healed from a peer", cid)
        return data

    async def _heal_quietly(self, cid: CID) -> None:
        try:
            await self.heal(cid)
        except (TokenweaveError, aio.AioRpcError) as exc:
            logger.warning("could not heal block %s: %s", cid, exc)

    async def _work(self, session: _Session) -> None:
        while True:
            if session.draining.is_set():
                return
            assignment = await session.queue.get()
            if session.draining.is_set():
                session.queue.put_nowait(assignment)
                return
            if assignment.shard_id in session.cancelled:
                continue
            session.running = assignment.shard_id
            session.idle.clear()
            try:
                await session.send(await self._run(assignment))
            finally:
                session.running = None
                session.idle.set()

    async def _run(self, assignment: nodes_pb2.ShardAssignment) -> nodes_pb2.LeaseRequest:
        runner = self._runners.get(assignment.model)
        if runner is None or runner.model.sha256 != assignment.model_sha256:
            have = runner.model.sha256 if runner else "no such model"
            return nodes_pb2.LeaseRequest(
                failure=nodes_pb2.ShardFailure(
                    shard_id=assignment.shard_id,
                    error=(
                        f"refusing model {assignment.model} sha256 {assignment.model_sha256}: "
                        f"this node has {have}"
                    ),
                )
            )
        try:
            if assignment.spans:
                windows = await asyncio.to_thread(self._dataset_windows, assignment, runner)
            else:
                windows = [
                    np.frombuffer(w.token_ids, dtype="<u4").astype(np.int64)
                    for w in assignment.windows
                ]
            run = await asyncio.to_thread(runner.run, windows)
        except Exception as exc:
            logger.exception("shard %s failed", assignment.shard_id)
            return nodes_pb2.LeaseRequest(
                failure=nodes_pb2.ShardFailure(
                    shard_id=assignment.shard_id, error=f"{type(exc).__name__}: {exc}"
                )
            )
        self.shards_done += 1
        logger.info(
            "shard %s: %d windows, %d tokens in %.2f s (%.0f tokens/s)",
            assignment.shard_id,
            run.rows,
            run.tokens,
            run.wall_seconds,
            run.tokens / run.wall_seconds if run.wall_seconds else 0.0,
        )
        return nodes_pb2.LeaseRequest(
            result=nodes_pb2.ShardResult(
                shard_id=assignment.shard_id,
                embeddings=run.embeddings,
                rows=run.rows,
                dim=run.dim,
                tokens=run.tokens,
                wall_seconds=run.wall_seconds,
                digest=run.digest,
                provider=run.provider,
                tokens_digest=windows_digest(windows),
            )
        )

    # -- dataset jobs -------------------------------------------------------------------------

    def _dataset_windows(
        self, assignment: nodes_pb2.ShardAssignment, runner: ShardRunner
    ) -> list[npt.NDArray[np.int64]]:
        """Read the shard's documents from dataset blocks (this node's own where it has them,
        peers' otherwise), tokenize them and cut the assigned windows. Runs in a worker thread."""
        reads = _Reads()
        seen: dict[CID, bytes] = {}  # documents of one shard often share blocks

        def block(cid: CID) -> bytes:
            data = seen.get(cid)
            if data is not None:
                return data
            try:
                data = self.read_block(cid)
                reads.local += len(data)
            except NotFoundError:
                data = self._on_loop(self.fetch_from_peers(cid))
                reads.remote += len(data)
            seen[cid] = data
            return data

        documents: dict[int, npt.NDArray[np.int64]] = {}
        for source in assignment.sources:
            key = (source.file, source.start, source.end, source.text_field, runner.model.sha256)
            ids = self._documents.get(key)
            if ids is None:
                ref = DocumentRef(
                    f"document {source.document}", CID.parse(source.file), source.start, source.end
                )
                text = read_document(ref, block, source.text_field or None)
                ids = encode_document(runner.tokenizer, text)
                self._documents[key] = ids
                while len(self._documents) > DOCUMENT_CACHE:
                    self._documents.popitem(last=False)
            else:
                self._documents.move_to_end(key)
            documents[source.document] = ids
        missing = {s.document for s in assignment.spans} - set(documents)
        if missing:
            raise InvalidArgumentError(f"no source for documents {sorted(missing)}")
        if reads.local or reads.remote:
            logger.info(
                "shard %s: read %d bytes of dataset from this node, %d from peers",
                assignment.shard_id,
                reads.local,
                reads.remote,
            )
        return [documents[s.document][s.start : s.end] for s in assignment.spans]
