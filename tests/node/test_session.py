"""LeaseSession without sockets: scripted fakes of the coordinator's
stubs and of the lease stream."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from grpc import aio

from tokenweave.errors import UnavailableError
from tokenweave.node import NodeConfig, NodeIdentity
from tokenweave.node._blocks import ProviderLookup
from tokenweave.node._session import LeaseSession, RegistrationRefusedError, SessionLostError
from tokenweave.storage import CID, RAW
from tokenweave.v1 import data_pb2, nodes_pb2


def _rpc_error(code: grpc.StatusCode, details: str = "scripted") -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(), details=details)


class FakeLeaseCall:
    """The node's side of a Lease stream; the test plays the coordinator through `push`."""

    def __init__(self) -> None:
        self._inbox: asyncio.Queue[nodes_pb2.LeaseResponse | None] = asyncio.Queue()
        self.written: list[nodes_pb2.LeaseRequest] = []
        self._wrote = asyncio.Event()
        self.done_writing_called = False
        self.cancelled = False

    def push(self, message: nodes_pb2.LeaseResponse) -> None:
        self._inbox.put_nowait(message)

    def end(self) -> None:
        self._inbox.put_nowait(None)

    async def write(self, request: nodes_pb2.LeaseRequest) -> None:
        self.written.append(request)
        self._wrote.set()

    async def done_writing(self) -> None:
        self.done_writing_called = True
        self.end()  # the coordinator closes the stream once it has applied everything

    def cancel(self) -> bool:
        self.cancelled = True
        return True

    def __aiter__(self) -> Any:
        return self._messages()

    async def _messages(self) -> Any:
        while (message := await self._inbox.get()) is not None:
            yield message

    def kinds(self) -> list[str]:
        return [str(r.WhichOneof("message")) for r in self.written]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.written) < count:
                self._wrote.clear()
                await self._wrote.wait()


class FakeNodeService:
    def __init__(
        self,
        register_error: aio.AioRpcError | None = None,
        heartbeats: Sequence[aio.AioRpcError | None] = (),
        heartbeat_interval_ms: int = 60_000,
        paces: Sequence[int] = (),
    ) -> None:
        self.register_error = register_error
        self.heartbeat_script = list(heartbeats)
        self.heartbeat_interval_ms = heartbeat_interval_ms
        #: The intervals (ms) heartbeats answer with, in turn (then 0: keep the pace).
        self.paces = list(paces)
        #: The deadline each heartbeat was sent with (twice the node's interval).
        self.timeouts: list[float | None] = []
        self.heartbeats = 0
        self.registered: list[nodes_pb2.RegisterRequest] = []
        self.lease = FakeLeaseCall()

    async def GetChallenge(  # noqa: N802 - the stub's names
        self, request: nodes_pb2.GetChallengeRequest
    ) -> nodes_pb2.GetChallengeResponse:
        return nodes_pb2.GetChallengeResponse(message=f"sign {request.address}", nonce=b"nonce")

    async def Register(  # noqa: N802
        self, request: nodes_pb2.RegisterRequest
    ) -> nodes_pb2.RegisterResponse:
        self.registered.append(request)
        if self.register_error is not None:
            raise self.register_error
        return nodes_pb2.RegisterResponse(
            node_id="node-1",
            session_token="token",
            heartbeat_interval_ms=self.heartbeat_interval_ms,
        )

    def Lease(self) -> FakeLeaseCall:  # noqa: N802
        return self.lease

    async def Heartbeat(  # noqa: N802
        self,
        request: nodes_pb2.HeartbeatRequest,
        timeout: float | None = None,  # noqa: ASYNC109 - the stub signature
    ) -> nodes_pb2.HeartbeatResponse:
        self.heartbeats += 1
        self.timeouts.append(timeout)
        error = self.heartbeat_script.pop(0) if self.heartbeat_script else None
        if error is not None:
            raise error
        pace = self.paces.pop(0) if self.paces else 0
        return nodes_pb2.HeartbeatResponse(heartbeat_interval_ms=pace)


class FakeDataService:
    def __init__(self, error: aio.AioRpcError | None = None) -> None:
        self.error = error

    async def GetProviders(  # noqa: N802
        self,
        request: data_pb2.GetProvidersRequest,
        timeout: float | None = None,  # noqa: ASYNC109 - the stub signature
    ) -> data_pb2.GetProvidersResponse:
        if self.error is not None:
            raise self.error
        return data_pb2.GetProvidersResponse(
            providers=[
                data_pb2.Provider(node_id="a", peer_id="PeerA", multiaddrs=["/a1", "/a2"]),
                data_pb2.Provider(node_id="b", peer_id="PeerB", multiaddrs=["/b1"]),
            ]
        )


class FakeBlocks:
    """A BlockKeeper that answers at once and records what it was asked."""

    def __init__(self) -> None:
        self.lookup: ProviderLookup | None = None
        self.disconnected = False
        self.kept: list[str] = []

    def connect(self, providers: ProviderLookup) -> None:
        self.lookup = providers

    async def disconnect(self) -> None:
        self.disconnected = True

    async def keep(self, block: nodes_pb2.StoreBlock) -> nodes_pb2.BlockStored:
        self.kept.append(block.cid)
        return nodes_pb2.BlockStored(cid=block.cid, ok=True)

    async def copy(self, request: nodes_pb2.FetchBlock) -> nodes_pb2.BlockStored:
        return nodes_pb2.BlockStored(cid=request.cid, ok=False, error="no provider")

    async def prove(self, audit: nodes_pb2.AuditChallenge) -> nodes_pb2.AuditProof:
        return nodes_pb2.AuditProof(cid=audit.cid, nonce=audit.nonce, error="not held")


class HeldRuns:
    """A RunShard whose shards finish when `finish` is set."""

    def __init__(self) -> None:
        self.finish = asyncio.Event()
        self.started = asyncio.Event()

    async def __call__(
        self, assignment: nodes_pb2.ShardAssignment, *rest: object
    ) -> nodes_pb2.LeaseRequest:
        self.started.set()
        await self.finish.wait()
        return nodes_pb2.LeaseRequest(result=nodes_pb2.ShardResult(shard_id=assignment.shard_id))


@pytest.fixture
def identity(tmp_path: Path) -> NodeIdentity:
    return NodeIdentity.load_or_create(tmp_path / "node")


def _session(
    identity: NodeIdentity,
    blocks: FakeBlocks | None = None,
    run_shard: Callable[[nodes_pb2.ShardAssignment], Awaitable[nodes_pb2.LeaseRequest]]
    | None = None,
    grace_s: float = 5.0,
) -> LeaseSession:
    template = nodes_pb2.RegisterRequest(max_inflight_shards=2, peer_id="PeerMe")
    return LeaseSession(
        NodeConfig(coordinator="fake:1", shutdown_grace_s=grace_s),
        identity,
        template,
        blocks or FakeBlocks(),  # type: ignore[arg-type]
        run_shard or HeldRuns(),
    )


async def _serve(
    session: LeaseSession,
    coordinator: FakeNodeService,
    data: FakeDataService | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    await session.serve(
        cast(Any, coordinator), cast(Any, data or FakeDataService()), stop or asyncio.Event()
    )


def _assign(shard_id: str) -> nodes_pb2.LeaseResponse:
    return nodes_pb2.LeaseResponse(assignment=nodes_pb2.ShardAssignment(shard_id=shard_id))


async def test_a_session_registers_signed_and_drains_on_stop(identity: NodeIdentity) -> None:
    coordinator, blocks, runs = FakeNodeService(), FakeBlocks(), HeldRuns()
    session = _session(identity, blocks, runs)
    stop = asyncio.Event()
    serving = asyncio.create_task(_serve(session, coordinator, stop=stop))
    lease = coordinator.lease
    for shard in ("s1", "s2", "s3"):
        lease.push(_assign(shard))
    await runs.started.wait()
    stop.set()
    await lease.wait_for(2)
    assert lease.kinds() == ["hello", "release"]
    assert list(lease.written[1].release.shard_ids) == ["s2", "s3"]
    runs.finish.set()
    await serving

    (request,) = coordinator.registered
    assert (request.address, request.nonce, request.max_inflight_shards) == (
        identity.address,
        b"nonce",
        2,
    )
    signed = encode_defunct(text=f"sign {identity.address}")
    assert Account.recover_message(signed, signature=request.signature) == identity.address
    hello = lease.written[0].hello
    assert (hello.node_id, hello.session_token) == ("node-1", "token")
    assert lease.kinds() == ["hello", "release", "result"]
    assert lease.written[2].result.shard_id == "s1"
    assert lease.done_writing_called
    assert lease.cancelled
    assert session.registered
    assert blocks.lookup is not None
    assert blocks.disconnected


@pytest.mark.parametrize(
    "code",
    [
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
    ],
)
async def test_a_refused_registration_is_fatal(
    identity: NodeIdentity, code: grpc.StatusCode
) -> None:
    session = _session(identity)
    coordinator = FakeNodeService(register_error=_rpc_error(code, "reputation too low"))
    with pytest.raises(RegistrationRefusedError, match="refused this node: reputation too low"):
        await _serve(session, coordinator)
    assert not session.registered


async def test_an_unavailable_coordinator_is_a_lost_session(identity: NodeIdentity) -> None:
    session = _session(identity)
    coordinator = FakeNodeService(register_error=_rpc_error(grpc.StatusCode.UNAVAILABLE, "down"))
    with pytest.raises(SessionLostError, match="UNAVAILABLE: down"):
        await _serve(session, coordinator)
    assert not session.registered


async def test_a_stream_closed_by_the_coordinator_is_a_lost_session(
    identity: NodeIdentity,
) -> None:
    session = _session(identity)
    coordinator = FakeNodeService()
    coordinator.lease.end()
    with pytest.raises(SessionLostError, match="closed the lease stream"):
        await _serve(session, coordinator)
    assert session.registered
    assert coordinator.lease.cancelled


async def test_block_messages_are_answered_on_the_stream(identity: NodeIdentity) -> None:
    coordinator, blocks = FakeNodeService(), FakeBlocks()
    session = _session(identity, blocks)
    stop = asyncio.Event()
    serving = asyncio.create_task(_serve(session, coordinator, stop=stop))
    lease = coordinator.lease
    lease.push(nodes_pb2.LeaseResponse(store=nodes_pb2.StoreBlock(cid="c1", data=b"x")))
    lease.push(nodes_pb2.LeaseResponse(fetch=nodes_pb2.FetchBlock(cid="c2")))
    lease.push(nodes_pb2.LeaseResponse(audit=nodes_pb2.AuditChallenge(cid="c3", nonce=b"n")))
    lease.push(nodes_pb2.LeaseResponse(cancel=nodes_pb2.ShardCancel(shard_id="s9")))
    lease.push(
        nodes_pb2.LeaseResponse(ack=nodes_pb2.ShardAck(shard_id="s0", accepted=False, reason="r"))
    )
    await lease.wait_for(4)
    answers = {r.WhichOneof("message"): r for r in lease.written[1:]}
    assert sorted(r.WhichOneof("message") or "" for r in lease.written[1:]) == [
        "proof",
        "stored",
        "stored",
    ]
    assert answers["proof"].proof.error == "not held"
    assert blocks.kept == ["c1"]
    stop.set()
    await serving


async def test_nothing_is_stored_or_answered_while_draining(identity: NodeIdentity) -> None:
    coordinator, blocks, runs = FakeNodeService(), FakeBlocks(), HeldRuns()
    session = _session(identity, blocks, runs)
    stop = asyncio.Event()
    serving = asyncio.create_task(_serve(session, coordinator, stop=stop))
    lease = coordinator.lease
    lease.push(_assign("s1"))
    await runs.started.wait()
    stop.set()
    await asyncio.sleep(0.01)  # the session is now waiting for s1
    lease.push(nodes_pb2.LeaseResponse(store=nodes_pb2.StoreBlock(cid="c1", data=b"x")))
    lease.push(nodes_pb2.LeaseResponse(audit=nodes_pb2.AuditChallenge(cid="c3", nonce=b"n")))
    await asyncio.sleep(0.01)
    runs.finish.set()
    await serving
    assert blocks.kept == []
    assert lease.kinds() == ["hello", "result"]


async def test_the_provider_lookup_asks_the_data_service(identity: NodeIdentity) -> None:
    blocks = FakeBlocks()
    coordinator = FakeNodeService()
    coordinator.lease.end()
    with pytest.raises(SessionLostError):
        await _serve(_session(identity, blocks), coordinator)
    assert blocks.lookup is not None
    cid = CID.of(RAW, b"block")
    assert await blocks.lookup(cid) == {"PeerA": ["/a1", "/a2"], "PeerB": ["/b1"]}

    failing = FakeBlocks()
    coordinator = FakeNodeService()
    coordinator.lease.end()
    data = FakeDataService(error=_rpc_error(grpc.StatusCode.UNAVAILABLE, "gone"))
    with pytest.raises(SessionLostError):
        await _serve(_session(identity, failing), coordinator, data)
    assert failing.lookup is not None
    with pytest.raises(UnavailableError, match="UNAVAILABLE: gone"):
        await failing.lookup(cid)


async def test_missed_heartbeats_are_tolerated_up_to_three_in_a_row(
    identity: NodeIdentity,
) -> None:
    unavailable = _rpc_error(grpc.StatusCode.UNAVAILABLE, "blip")
    script = [unavailable, unavailable, None, unavailable, unavailable, unavailable]
    coordinator = FakeNodeService(heartbeats=script, heartbeat_interval_ms=100)
    with pytest.raises(SessionLostError, match="UNAVAILABLE: blip"):
        await _serve(_session(identity), coordinator)
    assert coordinator.heartbeats == 6


async def test_the_node_beats_at_the_pace_each_heartbeat_answers(
    identity: NodeIdentity,
) -> None:
    """A node that registered when the network was small slows down as it grows: each beat's
    answer sets the interval (0 keeps it)."""
    script = [None, None, None, _rpc_error(grpc.StatusCode.UNAUTHENTICATED, "end")]
    coordinator = FakeNodeService(heartbeats=script, heartbeat_interval_ms=100, paces=[300, 0])
    with pytest.raises(SessionLostError):
        await _serve(_session(identity), coordinator)
    assert coordinator.timeouts == [0.2, 0.6, 0.6, 0.6]


async def test_a_rejected_heartbeat_ends_the_session_at_once(identity: NodeIdentity) -> None:
    script = [_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "stale token")]
    coordinator = FakeNodeService(heartbeats=script, heartbeat_interval_ms=100)
    with pytest.raises(SessionLostError, match="UNAUTHENTICATED: stale token"):
        await _serve(_session(identity), coordinator)
    assert coordinator.heartbeats == 1
