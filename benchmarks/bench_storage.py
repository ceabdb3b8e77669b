"""Storage throughput for one file, beside plain sha256 and a raw loopback TCP copy.

    python benchmarks/bench_storage.py [--mb 256] [--no-cluster]

Measured on one machine:
* end to end, as `tokenweave data put/get` do it, on a coordinator and three node processes:
  put = the client chunks and hashes, streams the blocks over gRPC, the coordinator checks each
  and has 3 nodes store it (fsync) and confirm; get = every block fetched from the nodes over
  libp2p and verified, the file written out;
* the components alone: put = chunk + hash + UnixFS DAG + atomic writes into one BlockStore;
  get = every block from another libp2p host (TCP + Noise + Yamux), verified, 8 at a time;
* baselines: sha256 of the same bytes, and a plain TCP copy over 127.0.0.1.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from tokenweave.cli import LocalCluster
from tokenweave.storage import CID, RAW, Block, BlockExchange, BlockStore, import_file


def tcp_copy(data: bytes) -> float:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(data)

    thread = threading.Thread(target=serve)
    thread.start()
    started = time.perf_counter()
    received = 0
    with socket.create_connection(("127.0.0.1", port)) as client:
        while chunk := client.recv(1 << 20):
            received += len(chunk)
    elapsed = time.perf_counter() - started
    thread.join()
    server.close()
    assert received == len(data)
    return elapsed


def through_the_network(data: bytes) -> tuple[float, float]:
    """Seconds for `data put` and `data get` of `data` on a local 3-node cluster."""
    with tempfile.TemporaryDirectory(prefix="tokenweave-bench-") as tmp:
        source = Path(tmp) / "file.bin"
        source.write_bytes(data)
        with LocalCluster(root=Path(tmp) / "cluster", node_args=("--threads", "1")) as cluster:
            cluster.start(nodes=3)
            with cluster.client() as client:
                started = time.perf_counter()
                put = client.put(source)
                put_s = time.perf_counter() - started
                started = time.perf_counter()
                client.get(put.root, Path(tmp) / "back.bin")
                get_s = time.perf_counter() - started
        assert (Path(tmp) / "back.bin").read_bytes() == data, "the file came back different"
        assert put.min_replicas == 3
    return put_s, get_s


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--no-cluster", action="store_true", help="components only")
    args = parser.parse_args()
    data = np.random.default_rng(1).integers(0, 256, args.mb << 20, dtype=np.uint8).tobytes()
    mb = len(data) / 1e6

    started = time.perf_counter()
    hashlib.sha256(data).digest()
    sha = time.perf_counter() - started
    tcp = tcp_copy(data)

    with tempfile.TemporaryDirectory() as tmp:
        source = BlockStore(Path(tmp) / "a")
        blocks: list[Block] = []

        def keep(block: Block) -> None:
            source.put(block.cid, block.data)
            blocks.append(block)

        started = time.perf_counter()
        root = import_file(io.BytesIO(data), keep)
        put = time.perf_counter() - started

        target = BlockStore(Path(tmp) / "b")
        leaves = [b.cid for b in blocks if b.cid.codec == RAW]
        with BlockExchange(source.get) as provider, BlockExchange(target.get) as client:
            started = time.perf_counter()

            def fetch(cid: CID) -> None:
                target.put(cid, client.fetch(cid, provider.addrs))

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(fetch, leaves))
            out = b"".join(target.get(cid) for cid in leaves)
            get = time.perf_counter() - started
        assert out == data, "the file came back different"

    print(f"{args.mb} MiB random file, root {root.cid}")
    print(f"sha256 alone:                  {mb / sha:8.0f} MB/s")
    print(f"TCP copy over loopback:        {mb / tcp:8.0f} MB/s")
    print(f"put (import into one store):   {mb / put:8.0f} MB/s   {sha / put:6.2f}x sha256")
    print(f"get (libp2p, verified):        {mb / get:8.0f} MB/s   {tcp / get:6.2f}x TCP copy")
    if not args.no_cluster:
        put_s, get_s = through_the_network(data)
        print(f"data put (3 nodes, 3 copies):  {mb / put_s:8.0f} MB/s   {sha / put_s:6.2f}x sha256")
        print(f"data get (from the nodes):     {mb / get_s:8.0f} MB/s   {tcp / get_s:6.2f}x TCP")


if __name__ == "__main__":
    main()
