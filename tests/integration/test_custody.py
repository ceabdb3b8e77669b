"""Custody with real processes: repair after a kill, heal-on-read of a flipped byte, audits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tokenweave.cli import LocalCluster
from tokenweave.client import BlockReplicas, Client, NodeInfo
from tokenweave.node import NodeIdentity
from tokenweave.storage import CID, BlockExchange

from .conftest import ClusterFactory, random_file, wait_until

#: Repairs start 3 s after a provider leaves; custody rounds every half second.
FAST_CUSTODY = ("--repair-grace-s", "3", "--custody-interval-s", "0.5")


def _node_id(cluster: LocalCluster, index: int) -> str:
    return NodeIdentity.load_or_create(cluster.root / f"node{index}").address.lower()


def _block_files(cluster: LocalCluster, index: int) -> list[Path]:
    return sorted((cluster.root / f"node{index}" / "blocks" / "blocks").glob("*/b*"))


def _blocks(client: Client, root: str) -> list[BlockReplicas]:
    return client.dataset_status(root)[1]


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    # No audits here: they would race the heal-on-read test for the corrupt block.
    return module_cluster_factory(
        nodes=3, coordinator_args=(*FAST_CUSTODY, "--audits-per-round", "0")
    )


@pytest.fixture
def peer() -> Iterator[BlockExchange]:
    """A bare libp2p peer that holds nothing, to fetch blocks from one node at a time."""

    with BlockExchange(timeout=20).start() as exchange:
        yield exchange


def test_replicas_return_to_three_after_a_provider_is_killed(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "fifty.bin", 50 * 1024 * 1024, seed=7)
    victim = _node_id(cluster, 0)
    with cluster.client() as client:
        put = client.put(source)
        assert put.min_replicas == 3
        assert all(b.replicas == 3 for b in _blocks(client, put.root))

        cluster.nodes[0].kill()
        wait_until(
            "the killed node shows as offline",
            lambda: all(b.offline_node_ids == (victim,) for b in _blocks(client, put.root)),
        )
        client.get(put.root, tmp_path / "during.bin")
        assert (tmp_path / "during.bin").read_bytes() == source.read_bytes()

        cluster.add_node()  # a fresh node joins; the victim's copies move to it
        cluster.wait_for_nodes(3)
        wait_until(
            "every block back at 3 connected replicas",
            lambda: all(b.replicas == 3 for b in _blocks(client, put.root)),
        )
        blocks = _blocks(client, put.root)
        assert all(victim not in b.node_ids for b in blocks)
        assert len(_block_files(cluster, 3)) == len(blocks)
        client.get(put.root, tmp_path / "after.bin")
        assert (tmp_path / "after.bin").read_bytes() == source.read_bytes()


def test_a_flipped_byte_is_detected_and_healed_from_a_peer(
    cluster: LocalCluster, tmp_path: Path, peer: BlockExchange
) -> None:
    with cluster.client() as client:
        put = client.put(random_file(tmp_path / "small.bin", 600_000, seed=8), profile="kubo")
        nodes = {n.node_id: n for n in client.nodes() if n.online}
    holder = _node_id(cluster, 1)
    path = next(p for p in _block_files(cluster, 1) if p.name != put.root)
    cid = CID.parse(path.name)
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0x01
    path.write_bytes(bytes(flipped))

    # Ask only the node with the bad copy: it notices, heals from a peer, and serves good bytes.
    assert peer.fetch(cid, nodes[holder].multiaddrs) == good
    assert path.read_bytes() == good
    quarantined = cluster.root / "node1" / "blocks" / "quarantine" / path.name
    assert quarantined.read_bytes() == bytes(flipped)
    assert "healing it from peers" in cluster.nodes[1].log_path.read_text()


@pytest.fixture  # one test uses it: stopped when that test ends, not with the module's `cluster`
def audited(cluster_factory: ClusterFactory) -> LocalCluster:
    # No reputation threshold: a node below it is cut off at once (see the dispatcher's tests),
    # and this test follows the block back onto the node that lost it.
    return cluster_factory(
        nodes=3,
        coordinator_args=(*FAST_CUSTODY, "--audits-per-round", "6", "--min-reputation", "0"),
    )


def test_audits_catch_a_node_that_lost_its_blocks(audited: LocalCluster, tmp_path: Path) -> None:
    with audited.client() as client:
        put = client.put(random_file(tmp_path / "audit.bin", 700_000, seed=9), profile="kubo")
        for path in _block_files(audited, 0):
            path.unlink()
        cheat = _node_id(audited, 0)

        def by_id() -> dict[str, NodeInfo]:
            return {n.node_id: n for n in client.nodes()}

        wait_until(
            "the node without its blocks fails an audit", lambda: by_id()[cheat].audits_failed
        )
        wait_until(
            "the honest nodes pass audits",
            lambda: all(n.audits_passed for i, n in by_id().items() if i != cheat),
        )
        nodes = by_id()
        assert nodes[cheat].reputation <= 0.5
        assert all(
            n.audits_failed == 0 and n.reputation == 1.0 for i, n in nodes.items() if i != cheat
        )
        # The failed record is dropped and repair copies the block again.
        wait_until(
            "every block back at 3 replicas",
            lambda: (
                all(b.replicas == 3 for b in _blocks(client, put.root))
                and bool(_block_files(audited, 0))
            ),
        )
