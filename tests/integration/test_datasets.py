"""Datasets end to end: three real nodes keep the blocks, a client fetches them over libp2p."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tokenweave.cli import LocalCluster
from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.node import NodeIdentity
from tokenweave.storage import CID, DAG_PB, RAW
from tokenweave.storage._dagpb import (
    UNIXFS_DIRECTORY,
    UNIXFS_FILE,
    PBLink,
    _bytes_field,
    _varint_field,
    encode_node,
    unixfs_data,
)
from tokenweave.v1 import data_pb2, data_pb2_grpc

from .conftest import ClusterFactory, random_file


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    return module_cluster_factory(nodes=3)


def test_put_status_get_and_survive_a_kill(cluster: LocalCluster, tmp_path: Path) -> None:
    source = random_file(tmp_path / "data.bin", 3_000_000, seed=1)
    folder = tmp_path / "corpus"
    random_file(folder / "a.txt", 10_000, seed=2)
    random_file(folder / "sub" / "b.txt", 700_000, seed=3)
    with cluster.client() as client:
        put = client.put(source, profile="kubo")
        assert put.min_replicas == 3
        assert put.bytes >= 3_000_000
        tree = client.put(folder)
        assert {d.root for d in client.datasets()} >= {put.root, tree.root}
        info, blocks = client.dataset_status(put.root)
        assert (info.name, info.size, info.blocks) == ("data.bin", 3_000_000, len(blocks))
        assert all(b.replicas == 3 for b in blocks)

        client.get(put.root, tmp_path / "back.bin")
        assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()

        victim = cluster.nodes[0]
        victim.kill()
        client.get(put.root, tmp_path / "again.bin")
        assert (tmp_path / "again.bin").read_bytes() == source.read_bytes()
        client.get(tree.root, tmp_path / "corpus-back")
        for path in folder.rglob("*"):
            copy = tmp_path / "corpus-back" / path.relative_to(folder)
            assert copy.is_dir() if path.is_dir() else copy.read_bytes() == path.read_bytes()


def test_bad_uploads_are_refused(cluster: LocalCluster) -> None:
    block = b"some bytes"
    cid = str(CID.of(RAW, block))
    with cluster.channel() as channel:
        stub = data_pb2_grpc.DataServiceStub(channel)
        cases = [
            (
                [data_pb2.PutBlocksRequest(block=data_pb2.DataBlock(cid=cid, data=block))],
                grpc.StatusCode.FAILED_PRECONDITION,
                "without a finish message",
            ),
            (
                [data_pb2.PutBlocksRequest(block=data_pb2.DataBlock(cid=cid, data=b"other"))],
                grpc.StatusCode.INVALID_ARGUMENT,
                "do not hash to the CID",
            ),
            (
                [data_pb2.PutBlocksRequest(block=data_pb2.DataBlock(cid="QmNope", data=block))],
                grpc.StatusCode.INVALID_ARGUMENT,
                "is not a base32 CIDv1",
            ),
            (
                [data_pb2.PutBlocksRequest(finish=data_pb2.PutFinish(root=cid))],
                grpc.StatusCode.INVALID_ARGUMENT,
                "was not among the uploaded blocks",
            ),
        ]
        for requests, code, message in cases:
            with pytest.raises(grpc.RpcError) as info:
                stub.PutBlocks(iter(requests))
            assert info.value.code() == code
            assert message in info.value.details()
    with cluster.client() as client, pytest.raises(NotFoundError, match="no dataset with root"):
        client.dataset_status(cid)


def test_the_data_commands(cluster: LocalCluster, tmp_path: Path) -> None:
    source = random_file(tmp_path / "notes.txt", 50_000, seed=4)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tokenweave.cli",
                "data",
                *args,
                "--coordinator",
                cluster.address,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, **cluster.client_env()},
            check=False,
        )

    put = cli("put", str(source))
    assert put.returncode == 0, put.stderr
    cid = put.stdout.strip().splitlines()[-1]
    stored = json.loads(cli("put", str(source), "--json").stdout)
    assert stored["target_replicas"] == 3
    if stored["min_replicas"] < 3:  # fewer nodes online than the coordinator keeps copies
        assert "under-replicated" in " ".join(put.stderr.split())
    assert cid == json.loads(cli("put", str(source), "--json").stdout)["cid"]
    got = cli("get", cid, "-o", str(tmp_path / "copy.txt"))
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "copy.txt").read_bytes() == source.read_bytes()
    status = json.loads(cli("status", cid, "--json").stdout)
    assert status["name"] == "notes.txt"
    assert status["target_replicas"] == 3
    assert cli("status", cid[:12]).returncode == 0  # a prefix of the root is taken
    with cluster.client() as client:
        online = sum(n.online for n in client.nodes())  # an earlier test may have killed one
    assert [b["replicas"] for b in status["blocks"]] == [min(3, online)]
    assert cid in {d["root"] for d in json.loads(cli("ls", "--json").stdout)}
    assert cli("ls").returncode == 0
    missing = cli("put", str(tmp_path / "absent"))
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr
    bad = cli("status", "not-a-cid")
    assert bad.returncode == 2
    assert "INVALID_ARGUMENT" in bad.stderr


def test_a_full_node_passes_blocks_on_and_says_why(cluster: LocalCluster, tmp_path: Path) -> None:
    with cluster.client() as client:
        online = sum(n.online for n in client.nodes())
    cluster.add_node("--block-quota-bytes", "1000")
    cluster.wait_for_nodes(online + 1)
    full = NodeIdentity.load_or_create(cluster.root / f"node{len(cluster.nodes) - 1}")
    source = random_file(tmp_path / "quota.bin", 1_000_000, seed=5)
    with cluster.client() as client:
        put = client.put(source, profile="kubo")
        assert put.min_replicas == min(3, online)  # the full node's turns went to the others
        _, blocks = client.dataset_status(put.root)
        # Its 1,000 bytes hold the small root node at most; every leaf went elsewhere.
        kept = [b.cid for b in blocks if full.address.lower() in b.node_ids]
        assert kept in ([], [put.root])
        client.get(put.root, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == source.read_bytes()
    assert "is full" in cluster.coordinator.log_path.read_text()  # type: ignore[union-attr]


def _cli(cluster: LocalCluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tokenweave.cli", "data", *args, "--coordinator", cluster.address],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **cluster.client_env()},
        check=False,
    )


def _upload(cluster: LocalCluster, blocks: list[tuple[int, bytes]], name: str, size: int) -> str:
    """Store hand-made (codec, block)s as a dataset whose root is the last one, as a hostile
    client would: the coordinator checks each block against its CID, and nothing else."""
    cids = [CID.of(codec, block) for codec, block in blocks]
    requests = [
        data_pb2.PutBlocksRequest(block=data_pb2.DataBlock(cid=str(cid), data=block))
        for cid, (_, block) in zip(cids, blocks, strict=True)
    ]
    finish = data_pb2.PutFinish(root=str(cids[-1]), name=name, size=size)
    requests.append(data_pb2.PutBlocksRequest(finish=finish))
    with cluster.channel() as channel:
        return data_pb2_grpc.DataServiceStub(channel).PutBlocks(iter(requests)).root


def _directory(entries: list[tuple[bytes, bytes]]) -> bytes:
    """A directory block naming raw leaves with any name bytes, UTF-8 or not."""
    links = b"".join(
        _bytes_field(
            2,
            _bytes_field(1, bytes(CID.of(RAW, leaf)))
            + _bytes_field(2, name)
            + _varint_field(3, len(leaf)),
        )
        for name, leaf in entries
    )
    return links + _bytes_field(1, unixfs_data(UNIXFS_DIRECTORY))


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([b"a.txt", b"\xff\xfe.txt"], "is not UTF-8"),
        ([b"a.txt", b"n" * 300], "is 300 bytes; names are at most 255"),
        ([b"a.txt", b"b.txt", b"b.txt"], "two entries named 'b.txt'"),
    ],
    ids=["not-utf8", "300-bytes", "duplicate"],
)
def test_data_get_refuses_odd_names_cleanly_and_writes_nothing(
    cluster: LocalCluster, tmp_path: Path, names: list[bytes], message: str
) -> None:
    """The coordinator refuses such a DAG as a dataset; smuggled inside another upload, it is a
    block `data get` can still be pointed at."""
    leaf = b"hello"
    directory = _directory([(n, leaf) for n in names])
    with pytest.raises(grpc.RpcError) as refused:
        _upload(cluster, [(RAW, leaf), (DAG_PB, directory)], "odd", 5 * len(names))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in str(refused.value.details())
    _upload(cluster, [(DAG_PB, directory), (RAW, leaf)], "hello", len(leaf))
    root = str(CID.of(DAG_PB, directory))
    (tmp_path / "out").mkdir()
    got = _cli(cluster, "get", root, "-o", str(tmp_path / "out" / "copy"))
    assert got.returncode == 2, got.stderr
    assert "INVALID_ARGUMENT" in got.stderr
    assert message in got.stderr
    assert "Traceback" not in got.stderr
    assert list((tmp_path / "out").iterdir()) == [], "no partial output, no staging folder"


def _file_node(child: CID, child_bytes: int, child_tsize: int, times: int) -> bytes:
    """A File node linking `child` `times` times, its sizes declared honestly."""
    return encode_node(
        [PBLink(child, "", child_tsize)] * times,
        unixfs_data(UNIXFS_FILE, filesize=times * child_bytes, blocksizes=[child_bytes] * times),
    )


def test_amplifying_dags_are_refused_before_they_are_read(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """One 4 KiB leaf linked many times: recorded under a smaller size, the upload is refused;
    linked a million times (4 GB in 4 KiB, a block stored inside another upload), `data get` and
    the SDK refuse it before reading a leaf; within the upload limits but past a job's, a dataset
    job is refused."""
    leaf = bytes(range(256)) * 16
    leaf_cid = CID.of(RAW, leaf)
    wide = _file_node(leaf_cid, len(leaf), len(leaf), 256)
    with pytest.raises(grpc.RpcError) as refused:
        _upload(cluster, [(RAW, leaf), (DAG_PB, wide)], "small.bin", len(leaf))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "gives its size as 4,096 bytes but its DAG declares 1,048,576" in str(
        refused.value.details()
    )

    middle = _file_node(leaf_cid, len(leaf), len(leaf), 1000)
    middle_cid = CID.of(DAG_PB, middle)
    bomb = _file_node(middle_cid, 1000 * len(leaf), len(middle) + 1000 * len(leaf), 1000)
    with pytest.raises(grpc.RpcError) as refused:
        _upload(cluster, [(RAW, leaf), (DAG_PB, middle), (DAG_PB, bomb)], "bomb", 4 * 10**9)
    assert "link-count limit" in str(refused.value.details())
    with pytest.raises(grpc.RpcError) as refused:
        _upload(cluster, [(DAG_PB, bomb)], "bomb", 4 * 10**9)
    assert "was not among the uploaded blocks" in str(refused.value.details())
    # Smuggled in: an upload whose root is the leaf carries the bomb's blocks too.
    _upload(cluster, [(DAG_PB, middle), (DAG_PB, bomb), (RAW, leaf)], "leaf", len(leaf))
    bomb_root = str(CID.of(DAG_PB, bomb))
    got = _cli(cluster, "get", bomb_root, "-o", str(tmp_path / "bomb.bin"))
    assert got.returncode == 2, got.stderr
    assert "link-count limit" in got.stderr
    assert "Traceback" not in got.stderr
    with cluster.client() as client:
        with pytest.raises(InvalidArgumentError, match="link-count limit"):
            client.get(bomb_root, tmp_path / "bomb.bin")
        big = _file_node(middle_cid, 1000 * len(leaf), len(middle) + 1000 * len(leaf), 100)
        root = _upload(cluster, [(RAW, leaf), (DAG_PB, middle), (DAG_PB, big)], "big", 4096 * 10**5)
        with pytest.raises(InvalidArgumentError, match="expanded-size limit"):
            client.embed_dataset(root)
    assert list(tmp_path.iterdir()) == []
