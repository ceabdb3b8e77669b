"""LeaseSession: one connection to the coordinator, from registration to a drained stream.

A session is: challenge → signed Register (EIP-191) → Lease stream (hello, then messages both
ways) with heartbeats beside it. The reader routes what the coordinator sends: assignments and
cancels to the `ShardQueue`, block work to the `BlockKeeper`, whose answers the session writes.
A session ends in one of three typed ways:

* it returns: `stop` was set, and it drained (queued shards handed back, the running one given
  the grace period, the stream closed once the coordinator has applied everything);
* `SessionLostError`: the connection, a heartbeat or the stream failed — worth a new session;
* `RegistrationRefusedError`: the coordinator refused this node — no retry can change that.

The daemon runs sessions one after another (`keep_connected`, _reconnect.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Protocol

import grpc
from grpc import aio

from tokenweave._tls import channel_credentials
from tokenweave.errors import FailedPreconditionError, UnavailableError
from tokenweave.node._blocks import HEAL_TIMEOUT_S, ProviderLookup
from tokenweave.node._config import NodeConfig
from tokenweave.node._identity import NodeIdentity
from tokenweave.node._worker import RunShard, ShardQueue
from tokenweave.storage import CID
from tokenweave.v1 import data_pb2, data_pb2_grpc, nodes_pb2, nodes_pb2_grpc

logger = logging.getLogger(__name__)

#: Registration answers that no retry can change: the daemon exits with the message.
REFUSED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNIMPLEMENTED,
    }
)
#: Heartbeats missed in a row before the session is given up.
HEARTBEAT_MISSES = 3
#: The coordinator takes and sends messages of at most 64 MiB (its `ServiceLimits`): a larger
#: one would be refused there anyway, so it is refused here, before it is sent or read.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Seconds a stopping node waits for the coordinator to close the lease stream.
CLOSE_TIMEOUT_S = 10.0


class RegistrationRefusedError(FailedPreconditionError):
    """The coordinator refused this node for a reason a retry cannot change."""


class SessionLostError(UnavailableError):
    """The session broke (connection, heartbeats, stream); a new one is worth trying."""


class BlockKeeper(Protocol):
    """The block work a session routes (`BlockService`)."""

    def connect(self, providers: ProviderLookup) -> None: ...
    async def disconnect(self) -> None: ...
    async def keep(self, block: nodes_pb2.StoreBlock) -> nodes_pb2.BlockStored: ...
    async def copy(self, request: nodes_pb2.FetchBlock) -> nodes_pb2.BlockStored: ...
    async def prove(self, audit: nodes_pb2.AuditChallenge) -> nodes_pb2.AuditProof: ...


def _lost(exc: aio.AioRpcError) -> SessionLostError:
    return SessionLostError(f"{exc.code().name}: {exc.details()}")


def open_channel(config: NodeConfig) -> aio.Channel:
    """A channel to the coordinator, with TLS when the node has a CA."""
    size = min(config.max_message_bytes, MAX_MESSAGE_BYTES)
    options = [
        ("grpc.max_receive_message_length", size),
        ("grpc.max_send_message_length", size),
    ]
    if config.tls_ca is None:
        return aio.insecure_channel(config.coordinator, options=options)
    credentials = channel_credentials(config.tls_ca, config.tls_cert, config.tls_key)
    return aio.secure_channel(config.coordinator, credentials, options=options)


class LeaseSession:
    """Create one per connection attempt; `await run(stop)` once."""

    def __init__(
        self,
        config: NodeConfig,
        identity: NodeIdentity,
        registration: nodes_pb2.RegisterRequest,
        blocks: BlockKeeper,
        run_shard: RunShard,
    ) -> None:
        self._config = config
        self._identity = identity
        self._registration = registration
        self._blocks = blocks
        self._run_shard = run_shard
        #: Whether the coordinator accepted this node (the backoff starts afresh after).
        self.registered = False
        self._draining = False
        self._write_lock = asyncio.Lock()
        self._call: aio.StreamStreamCall[nodes_pb2.LeaseRequest, nodes_pb2.LeaseResponse]
        #: Block copies and audit answers in progress.
        self._answers: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Connect, register and serve the lease until `stop` is set (then drain)."""
        async with open_channel(self._config) as channel:
            stub = nodes_pb2_grpc.NodeServiceStub(channel)
            data = data_pb2_grpc.DataServiceStub(channel)
            await self.serve(stub, data, stop)

    async def serve(
        self,
        stub: nodes_pb2_grpc.NodeServiceAsyncStub,
        data: data_pb2_grpc.DataServiceAsyncStub,
        stop: asyncio.Event,
    ) -> None:
        """`run` on stubs of an open channel (or fakes of them)."""
        try:
            reg = await self._register(stub)
            self._blocks.connect(self._provider_lookup(data))
            try:
                await self._lease(stub, reg, stop)
            finally:
                await self._blocks.disconnect()
        except aio.AioRpcError as exc:
            raise _lost(exc) from exc

    async def _register(
        self, stub: nodes_pb2_grpc.NodeServiceAsyncStub
    ) -> nodes_pb2.RegisterResponse:
        address = self._identity.address
        try:
            challenge = await stub.GetChallenge(nodes_pb2.GetChallengeRequest(address=address))
            request = nodes_pb2.RegisterRequest()
            request.CopyFrom(self._registration)
            request.address = address
            request.nonce = challenge.nonce
            request.signature = self._identity.sign(challenge.message)
            reg = await stub.Register(request)
        except aio.AioRpcError as exc:
            if exc.code() in REFUSED:
                raise RegistrationRefusedError(
                    f"{self._config.coordinator} refused this node: {exc.details()}"
                ) from exc
            raise
        self.registered = True
        logger.info("registered with %s as %s", self._config.coordinator, reg.node_id)
        return reg

    def _provider_lookup(self, data: data_pb2_grpc.DataServiceAsyncStub) -> ProviderLookup:
        async def providers(cid: CID) -> Mapping[str, Sequence[str]]:
            try:
                reply = await data.GetProviders(
                    data_pb2.GetProvidersRequest(cid=str(cid)), timeout=HEAL_TIMEOUT_S
                )
            except aio.AioRpcError as exc:
                raise UnavailableError(
                    f"providers of {cid} from {self._config.coordinator}: "
                    f"{exc.code().name}: {exc.details()}"
                ) from exc
            holders: dict[str, list[str]] = {}
            for p in reply.providers:
                holders.setdefault(p.peer_id, []).extend(p.multiaddrs)
            return holders

        return providers

    async def _send(self, request: nodes_pb2.LeaseRequest) -> None:
        async with self._write_lock:
            await self._call.write(request)

    async def _lease(
        self,
        stub: nodes_pb2_grpc.NodeServiceAsyncStub,
        reg: nodes_pb2.RegisterResponse,
        stop: asyncio.Event,
    ) -> None:
        self._call = stub.Lease()
        queue = ShardQueue(self._run_shard, self._send, self._config.concurrent_shards or 1)
        await self._send(
            nodes_pb2.LeaseRequest(
                hello=nodes_pb2.LeaseHello(node_id=reg.node_id, session_token=reg.session_token)
            )
        )
        heartbeat = asyncio.create_task(self._heartbeat(stub, reg))
        reader = asyncio.create_task(self._read(queue))
        worker = queue.start()
        stopping = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait(
                {heartbeat, reader, worker, stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            if stopping in done:
                self._draining = True
                await queue.drain(self._config.shutdown_grace_s)
                await self._call.done_writing()
                # The coordinator ends the stream once it has applied everything sent.
                with contextlib.suppress(TimeoutError, aio.AioRpcError):
                    await asyncio.wait_for(asyncio.shield(reader), CLOSE_TIMEOUT_S)
                return
            for task in done:
                task.result()  # raise what ended the session
            raise SessionLostError("UNAVAILABLE: the coordinator closed the lease stream")
        finally:
            background = (heartbeat, reader, worker, stopping, *self._answers)
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError, aio.AioRpcError):
                    await task
            self._call.cancel()

    async def _heartbeat(
        self, stub: nodes_pb2_grpc.NodeServiceAsyncStub, reg: nodes_pb2.RegisterResponse
    ) -> None:
        interval = max(reg.heartbeat_interval_ms, 100) / 1000
        misses = 0
        while True:
            await asyncio.sleep(interval)
            try:
                beat = await stub.Heartbeat(
                    nodes_pb2.HeartbeatRequest(
                        node_id=reg.node_id, session_token=reg.session_token
                    ),
                    timeout=interval * 2,
                )
                misses = 0
                if beat.heartbeat_interval_ms:  # the network's size changed the pace
                    interval = max(beat.heartbeat_interval_ms, 100) / 1000
            except aio.AioRpcError as exc:
                misses += 1
                if exc.code() == grpc.StatusCode.UNAUTHENTICATED or misses >= HEARTBEAT_MISSES:
                    raise
                logger.warning(
                    "heartbeat missed (%s: %s); retrying", exc.code().name, exc.details()
                )

    async def _read(self, queue: ShardQueue) -> None:
        """Route what the coordinator sends until it ends the stream."""
        async for message in self._call:
            match message.WhichOneof("message"):
                case "assignment":
                    queue.assign(message.assignment)
                case "cancel":
                    queue.cancel(message.cancel.shard_id)
                case "store":
                    if not self._draining:  # else the coordinator learns from the closed stream
                        stored = await self._blocks.keep(message.store)
                        await self._answer(nodes_pb2.LeaseRequest(stored=stored))
                case "fetch":
                    # Copies run beside the stream: a slow peer must not hold up assignments.
                    self._beside(self._copy(message.fetch))
                case "audit":
                    self._beside(self._prove(message.audit))
                case "ack" if not message.ack.accepted:
                    logger.info(
                        "shard %s not counted: %s", message.ack.shard_id, message.ack.reason
                    )
                case _:
                    pass

    def _beside(self, answer: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(answer)
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)

    async def _copy(self, request: nodes_pb2.FetchBlock) -> None:
        stored = await self._blocks.copy(request)
        await self._answer(nodes_pb2.LeaseRequest(stored=stored))

    async def _prove(self, audit: nodes_pb2.AuditChallenge) -> None:
        proof = await self._blocks.prove(audit)
        await self._answer(nodes_pb2.LeaseRequest(proof=proof))

    async def _answer(self, request: nodes_pb2.LeaseRequest) -> None:
        """Send a block answer, unless the node is leaving (the closed stream says enough)."""
        if not self._draining:
            await self._send(request)
