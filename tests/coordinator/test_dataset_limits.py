"""DatasetReader against a real libp2p peer and a real index: amplification DAGs are refused
before their leaves are read, and a read stops when its caller is cancelled, its gRPC deadline
passes, or the reader closes — its fetch in flight cut short, not left to time out."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from tokenweave.coordinator._dataset_jobs import DatasetReader
from tokenweave.coordinator._datasets import DatasetIndex
from tokenweave.coordinator._db import NodeRow, open_database, utcnow
from tokenweave.coordinator._errors import StatusInterceptor
from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.storage import (
    CID,
    DAG_PB,
    RAW,
    BlockExchange,
    ImportProfile,
    ReadCancelledError,
    import_file,
)
from tokenweave.storage._dagpb import UNIXFS_FILE, PBLink, encode_node, unixfs_data

TINY = ImportProfile("tiny", 64, 3)


class Peer:
    """A node's blocks served over libp2p; a request for `stall` waits until `release`."""

    def __init__(self) -> None:
        self.blocks: dict[CID, bytes] = {}
        self.served: list[CID] = []
        self.stall: CID | None = None
        self.asked = threading.Event()
        self.release = threading.Event()
        self.exchange = BlockExchange(self._read)

    def _read(self, cid: CID) -> bytes:
        self.served.append(cid)
        if cid == self.stall:
            self.asked.set()
            self.release.wait(120)
        if cid not in self.blocks:
            raise NotFoundError(f"{cid}")
        return self.blocks[cid]

    def add(self, codec: int, data: bytes) -> CID:
        cid = CID.of(codec, data)
        self.blocks[cid] = data
        return cid


@pytest.fixture
def peer() -> Iterator[Peer]:
    peer = Peer()
    peer.exchange.start()
    yield peer
    peer.release.set()
    peer.exchange.stop()


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[DatasetIndex]:
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    yield DatasetIndex(sessions)
    await engine.dispose()


async def stored(index: DatasetIndex, peer: Peer, root: CID) -> str:
    """Record the peer's blocks as dataset `root`, held by node n1 at the peer's address."""
    async with index._db.begin() as session:
        session.add(
            NodeRow(
                node_id="n1",
                address="0x" + "0" * 40,
                hardware={},
                models=[],
                version="test",
                peer_id=peer.exchange.peer_id,
                multiaddrs=peer.exchange.addrs,
                registered_at=utcnow(),
                last_seen=utcnow(),
            )
        )
    cids = [str(cid) for cid in peer.blocks]
    await index.record(str(root), "dataset", 0, cids)
    for cid in cids:
        await index.add_providers(cid, ["n1"])
    return str(root)


def jsonl(lines: int) -> bytes:
    return b"".join(json.dumps({"text": f"document {i}"}).encode() + b"\n" for i in range(lines))


async def test_a_leaf_linked_a_million_times_is_refused_before_reading(
    peer: Peer, index: DatasetIndex
) -> None:
    leaf = peer.add(RAW, b"x" * (1 << 20))
    middle_block = encode_node(
        [PBLink(leaf, "", 1 << 20)] * 1000,
        unixfs_data(UNIXFS_FILE, filesize=1000 << 20, blocksizes=[1 << 20] * 1000),
    )
    middle = peer.add(DAG_PB, middle_block)
    middle_tsize = len(middle_block) + (1000 << 20)
    root = peer.add(
        DAG_PB,
        encode_node(
            [PBLink(middle, "", middle_tsize)] * 1000,
            unixfs_data(UNIXFS_FILE, filesize=1000_000 << 20, blocksizes=[1000 << 20] * 1000),
        ),
    )
    reader = DatasetReader(index)
    try:
        with pytest.raises(InvalidArgumentError, match="expanded-size limit"):
            await reader.documents(await stored(index, peer, root), "text")
    finally:
        reader.close()
    assert leaf not in peer.served, "the leaf is never fetched"
    assert set(peer.served) == {root, middle}


async def test_an_honest_dataset_is_read(peer: Peer, index: DatasetIndex) -> None:
    root = import_file(io.BytesIO(jsonl(20)), lambda b: peer.add(b.cid.codec, b.data), TINY)
    reader = DatasetReader(index)
    try:
        read = await reader.documents(await stored(index, peer, root.cid), "text")
    finally:
        reader.close()
    assert [d.text for d in read.documents] == [f"document {i}" for i in range(20)]
    assert reader.reading == 0


async def stalled_read(peer: Peer, index: DatasetIndex) -> tuple[DatasetReader, str]:
    """A dataset whose last leaf the peer never serves, and a reader with a long fetch timeout
    (a read that was not cut short would wait for it)."""
    root = import_file(io.BytesIO(jsonl(20)), lambda b: peer.add(b.cid.codec, b.data), TINY)
    peer.stall = [cid for cid in peer.blocks if cid.codec == RAW][-1]
    return DatasetReader(index, fetch_timeout_s=120), await stored(index, peer, root.cid)


async def test_cancelling_the_caller_stops_the_read(peer: Peer, index: DatasetIndex) -> None:
    reader, root = await stalled_read(peer, index)
    try:
        task = asyncio.create_task(reader.documents(root, "text"))
        assert await asyncio.to_thread(peer.asked.wait, 60)
        assert reader.reading == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reader.reading == 0, "the reading thread has stopped"
        assert not peer.release.is_set(), "the stalled fetch was cut, not answered"
    finally:
        reader.close()


async def test_closing_the_reader_stops_its_reads(peer: Peer, index: DatasetIndex) -> None:
    reader, root = await stalled_read(peer, index)
    task = asyncio.create_task(reader.documents(root, "text"))
    assert await asyncio.to_thread(peer.asked.wait, 60)
    await asyncio.to_thread(reader.close)
    with pytest.raises(ReadCancelledError, match="shutting down"):
        await task
    assert reader.reading == 0
    assert not peer.release.is_set()
    with pytest.raises(ReadCancelledError):
        await reader.documents(root, "text")


async def test_a_grpc_deadline_stops_the_read(peer: Peer, index: DatasetIndex) -> None:
    reader, root = await stalled_read(peer, index)

    finished = asyncio.Event()

    async def read(request: bytes, context: Any) -> bytes:
        try:
            await reader.documents(root, "text")
        finally:
            finished.set()
        return b""

    server = aio.server(interceptors=[StatusInterceptor()])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "t.Read", {"Read": grpc.unary_unary_rpc_method_handler(read)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/t.Read/Read")
            with pytest.raises(aio.AioRpcError) as caught:
                await call(b"", timeout=3)
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await finished.wait()  # the server learns of the deadline on its own
        assert reader.reading == 0
        assert peer.asked.is_set()
        assert not peer.release.is_set()
    finally:
        await server.stop(None)
        reader.close()
