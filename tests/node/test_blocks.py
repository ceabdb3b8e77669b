"""BlockService without a coordinator or libp2p: a real BlockStore in a temporary folder, a fake
exchange and a fake provider lookup."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tokenweave.errors import NotFoundError, UnavailableError
from tokenweave.node._blocks import BlockService
from tokenweave.storage import CID, RAW, BlockStore, CorruptBlockError
from tokenweave.storage._replicas import possession_proof
from tokenweave.v1 import nodes_pb2

DATA = b"a dataset block " * 64
CID_ = CID.of(RAW, DATA)
ME = "12D3KooWMe"


class FakeExchange:
    """Peers that hold `blocks`; records who was asked."""

    def __init__(self, blocks: Mapping[CID, bytes]) -> None:
        self.blocks = dict(blocks)
        self.asked: list[tuple[CID, list[str]]] = []

    @property
    def peer_id(self) -> str:
        return ME

    def fetch(self, cid: CID, providers: Sequence[str]) -> bytes:
        self.asked.append((cid, list(providers)))
        if not providers or cid not in self.blocks:
            raise NotFoundError(f"no provider has block {cid}")
        return self.blocks[cid]


async def _holders(cid: CID) -> Mapping[str, Sequence[str]]:
    return {
        ME: ["/ip4/127.0.0.1/tcp/1/p2p/" + ME],  # this node: never asked
        "12D3KooWPeer": ["/ip4/127.0.0.1/tcp/2/p2p/12D3KooWPeer"],
    }


@pytest.fixture
def store(tmp_path: Path) -> BlockStore:
    return BlockStore(tmp_path / "blocks")


@pytest.fixture
def exchange() -> FakeExchange:
    return FakeExchange({CID_: DATA})


@pytest.fixture
async def service(store: BlockStore, exchange: FakeExchange) -> BlockService:
    service = BlockService(store, exchange)
    service.attach(asyncio.get_running_loop())
    service.connect(_holders)
    return service


def _corrupt(store: BlockStore, cid: CID) -> None:
    (path,) = (p for p in store.root.rglob(str(cid)) if p.parent.parent.name == "blocks")
    path.write_bytes(b"X" + path.read_bytes()[1:])


async def test_an_audit_of_a_held_block_is_answered_with_its_proof(
    service: BlockService, store: BlockStore
) -> None:
    store.put(CID_, DATA)
    proof = await service.prove(nodes_pb2.AuditChallenge(cid=str(CID_), nonce=b"n1"))
    assert (proof.cid, proof.nonce, proof.error) == (str(CID_), b"n1", "")
    assert proof.proof == possession_proof(b"n1", DATA)


async def test_an_audit_of_a_missing_block_fails_with_an_error(
    service: BlockService, exchange: FakeExchange
) -> None:
    proof = await service.prove(nodes_pb2.AuditChallenge(cid=str(CID_), nonce=b"n1"))
    assert proof.proof == b""
    assert "not in this store" in proof.error
    assert not service.healing
    assert exchange.asked == []


async def test_an_audit_of_a_bad_cid_fails_with_an_error(service: BlockService) -> None:
    proof = await service.prove(nodes_pb2.AuditChallenge(cid="not a cid", nonce=b"n1"))
    assert proof.proof == b""
    assert proof.error


async def test_an_audit_of_a_corrupt_block_fails_and_heals_it_from_a_peer(
    service: BlockService, store: BlockStore, exchange: FakeExchange
) -> None:
    store.put(CID_, DATA)
    _corrupt(store, CID_)
    proof = await service.prove(nodes_pb2.AuditChallenge(cid=str(CID_), nonce=b"n1"))
    assert proof.proof == b""
    assert "corrupt" in proof.error
    await asyncio.gather(*service.healing)
    assert store.get(CID_) == DATA
    assert exchange.asked == [(CID_, ["/ip4/127.0.0.1/tcp/2/p2p/12D3KooWPeer"])]


async def test_disconnecting_stops_the_heals_in_progress(
    service: BlockService, store: BlockStore
) -> None:
    hold = asyncio.Event()

    async def slow(cid: CID) -> Mapping[str, Sequence[str]]:
        await hold.wait()
        return {}

    service.connect(slow)
    store.put(CID_, DATA)
    _corrupt(store, CID_)
    await service.prove(nodes_pb2.AuditChallenge(cid=str(CID_), nonce=b"n1"))
    (heal,) = service.healing
    await service.disconnect()
    assert heal.cancelled()
    assert not service.healing
    with pytest.raises(UnavailableError, match="not connected"):
        await service.fetch_from_peers(CID_)


async def test_a_read_from_a_worker_thread_heals_a_corrupt_block(
    service: BlockService, store: BlockStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.put(CID_, DATA)
    _corrupt(store, CID_)
    assert await asyncio.to_thread(service.read_block, CID_) == DATA
    assert store.get(CID_) == DATA
    assert "healing it from peers" in caplog.text


async def test_a_read_that_cannot_heal_says_why(
    service: BlockService, store: BlockStore, exchange: FakeExchange
) -> None:
    store.put(CID_, DATA)
    _corrupt(store, CID_)
    exchange.blocks.clear()
    with pytest.raises(CorruptBlockError, match="healing it failed: no provider"):
        await asyncio.to_thread(service.read_block, CID_)


async def test_a_read_of_a_missing_block_is_not_found_and_fetch_block_asks_peers(
    service: BlockService, store: BlockStore
) -> None:
    with pytest.raises(NotFoundError):
        await asyncio.to_thread(service.read_block, CID_)
    assert await asyncio.to_thread(service.fetch_block, CID_) == DATA
    assert not store.has(CID_), "a fetched block is not kept"


async def test_keep_stores_a_block_and_refuses_bytes_that_do_not_match(
    service: BlockService, store: BlockStore
) -> None:
    stored = await service.keep(nodes_pb2.StoreBlock(cid=str(CID_), data=DATA))
    assert (stored.cid, stored.ok, stored.error) == (str(CID_), True, "")
    assert store.get(CID_) == DATA
    other = CID.of(RAW, b"other")
    refused = await service.keep(nodes_pb2.StoreBlock(cid=str(other), data=DATA))
    assert not refused.ok
    assert "do not hash to its CID" in refused.error


async def test_copy_fetches_only_what_it_lacks(
    service: BlockService, store: BlockStore, exchange: FakeExchange
) -> None:
    providers = ["/ip4/127.0.0.1/tcp/2/p2p/12D3KooWPeer"]
    request = nodes_pb2.FetchBlock(cid=str(CID_), providers=providers)
    assert (await service.copy(request)).ok
    assert store.get(CID_) == DATA
    assert (await service.copy(request)).ok
    assert len(exchange.asked) == 1
    missing = CID.of(RAW, b"nobody has this")
    failed = await service.copy(nodes_pb2.FetchBlock(cid=str(missing), providers=providers))
    assert not failed.ok
    assert "no provider" in failed.error
