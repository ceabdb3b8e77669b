"""Block exchange between real libp2p hosts on loopback (each in its own trio thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tokenweave.errors import NotFoundError, UnavailableError
from tokenweave.storage import (
    CID,
    MAX_BLOCK_BYTES,
    RAW,
    BlockExchange,
    BlockStore,
    PeerMisbehavedError,
)

Starter = Callable[[Callable[[CID], bytes]], BlockExchange]
BLOCK = bytes(range(256)) * 4096  # 1 MiB
CID_OF_BLOCK = CID.of(RAW, BLOCK)


@pytest.fixture
def exchanges() -> Iterator[Starter]:
    started: list[BlockExchange] = []

    def start(reader: Callable[[CID], bytes]) -> BlockExchange:
        exchange = BlockExchange(reader, timeout=10).start()
        started.append(exchange)
        return exchange

    yield start
    for exchange in started:
        exchange.stop()


def _store(tmp_path: Path, name: str) -> BlockStore:
    store = BlockStore(tmp_path / name)
    store.put(CID_OF_BLOCK, BLOCK)
    return store


def test_a_block_is_fetched_and_verified(tmp_path: Path, exchanges: Starter) -> None:
    provider = exchanges(_store(tmp_path, "a").get)
    client = exchanges(BlockStore(tmp_path / "b").get)
    assert provider.addrs[0].startswith("/ip4/127.0.0.1/tcp/")
    assert provider.addrs[0].endswith(f"/p2p/{provider.peer_id}")
    assert client.fetch(CID_OF_BLOCK, provider.addrs) == BLOCK
    assert provider.stats.served == 1


def test_concurrent_fetches_from_asyncio(tmp_path: Path, exchanges: Starter) -> None:
    store = BlockStore(tmp_path / "a")
    blocks = [bytes([i]) * (100_000 + i) for i in range(8)]
    cids = [CID.of(RAW, b) for b in blocks]
    for cid, block in zip(cids, blocks, strict=True):
        store.put(cid, block)
    provider = exchanges(store.get)
    client = exchanges(BlockStore(tmp_path / "b").get)

    async def main() -> list[bytes]:
        return await asyncio.gather(
            *(asyncio.to_thread(client.fetch, cid, provider.addrs) for cid in cids)
        )

    assert asyncio.run(main()) == blocks


def test_missing_blocks_and_no_providers(tmp_path: Path, exchanges: Starter) -> None:
    provider = exchanges(BlockStore(tmp_path / "a").get)
    client = exchanges(BlockStore(tmp_path / "b").get)
    with pytest.raises(NotFoundError, match="does not have block"):
        client.fetch(CID_OF_BLOCK, provider.addrs)
    with pytest.raises(NotFoundError, match="no provider is known"):
        client.fetch(CID_OF_BLOCK, [])


def test_a_peer_serving_wrong_bytes_is_caught(tmp_path: Path, exchanges: Starter) -> None:
    liar = exchanges(lambda cid: b"not what you asked for")
    client = exchanges(BlockStore(tmp_path / "b").get)
    with pytest.raises(PeerMisbehavedError, match="served bytes that are not block"):
        client.fetch(CID_OF_BLOCK, liar.addrs)
    assert client.stats.bad_peers == {liar.peer_id}


def test_an_oversized_block_is_refused_unread(tmp_path: Path, exchanges: Starter) -> None:
    huge = exchanges(lambda cid: b"\0" * (MAX_BLOCK_BYTES + 1))
    client = exchanges(BlockStore(tmp_path / "b").get)
    with pytest.raises(PeerMisbehavedError, match="offered a block of"):
        client.fetch(CID_OF_BLOCK, huge.addrs)


def test_the_honest_provider_wins_over_a_liar_and_a_dead_one(
    tmp_path: Path, exchanges: Starter
) -> None:
    liar = exchanges(lambda cid: b"lies")
    dead = exchanges(BlockStore(tmp_path / "dead").get)
    dead_addrs = dead.addrs
    dead.stop()
    honest = exchanges(_store(tmp_path, "a").get)
    client = exchanges(BlockStore(tmp_path / "b").get)
    assert client.fetch(CID_OF_BLOCK, [*liar.addrs, *dead_addrs, *honest.addrs]) == BLOCK
    with pytest.raises((UnavailableError, PeerMisbehavedError)):
        client.fetch(CID_OF_BLOCK, [*liar.addrs, *dead_addrs])


def test_a_provider_that_restarted_on_another_port_is_reached_at_once(
    tmp_path: Path, exchanges: Starter
) -> None:
    """The same key on a new port (a node restarted): the old address failed, and the swarm's
    cache of failed peers must not keep the new one from being dialled."""
    store = _store(tmp_path, "a")
    key = bytes(range(1, 33))
    before = BlockExchange(store.get, key, timeout=10).start()
    client = exchanges(BlockStore(tmp_path / "b").get)
    assert client.fetch(CID_OF_BLOCK, before.addrs) == BLOCK
    before.stop()
    with pytest.raises((NotFoundError, UnavailableError)):
        client.fetch(CID_OF_BLOCK, before.addrs)
    after = BlockExchange(store.get, key, timeout=10).start()
    try:
        assert after.peer_id == before.peer_id
        assert after.addrs != before.addrs
        assert client.fetch(CID_OF_BLOCK, after.addrs) == BLOCK
    finally:
        after.stop()
