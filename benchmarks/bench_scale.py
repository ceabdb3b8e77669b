"""The scheduler at the size of a real network: simulated nodes against real coordinators.

    python benchmarks/bench_scale.py [--nodes 1000,10000] [--shards 100000] [--coordinators 1,2,3]
                                     [--postgres URL] [--processes 2] [--ray PYTHON] [--json FILE]

Each simulated node is the node's own lease protocol (`LeaseSession`: challenge, signed
Register, the Lease stream, heartbeats) over real sockets, with a model that costs nothing: it
answers each embed task with precomputed unit vectors and the digest of the task's tokens, which
the coordinator checks as it checks any node's. So the machine's cores measure the engine, not
the model. The nodes run as asyncio tasks in `--processes` processes, `--nodes-per-connection`
to a gRPC connection (a real network has a connection per node, from many hosts: the
coordinators here run with `--max-connections` and `--rate-limit` raised to match), one shard at
a time each, and the job is one embed job of `--shards` windows of 16 tokens, one window a shard.

Printed for each number of nodes and of coordinators (one: SQLite, or PostgreSQL with
`--postgres`; several: PostgreSQL):
  placements/s  shards leased per second, from the 10th to the 90th percentile of the leases
  lease p50/p99 a node's wait from sending a result to receiving its next shard
  RSS           the coordinators' resident memory at most (sampled every 0.5 s)
and, with `--ray PYTHON` (a Python with `ray` installed: `make bench-scale` makes one in
.venv-ray), Ray's task throughput on the same machine in the same run, synchronous and
asynchronous (benchmarks/ray_tasks.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import multiprocessing as mp
import os
import platform
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from tokenweave import __version__, tensors
from tokenweave.cli import LocalCluster
from tokenweave.cli._demo import shipped_text
from tokenweave.models import default_cache_dir, prepare_model, windows_digest
from tokenweave.v1 import data_pb2_grpc, embed_pb2, jobs_pb2, nodes_pb2, nodes_pb2_grpc

MODEL = "all-minilm-l6-v2"
DIM = 384
WINDOW = 16  # tokens, [CLS] and [SEP] included (the least a job may ask): the engine, not the model
HERE = Path(__file__).resolve().parent


class _NoBlocks:
    """A simulated node keeps no dataset blocks."""

    def connect(self, providers: object) -> None:
        pass

    async def disconnect(self) -> None:
        pass

    async def keep(self, block: nodes_pb2.StoreBlock) -> nodes_pb2.BlockStored:
        return nodes_pb2.BlockStored(cid=block.cid, ok=False, error="a simulated node")

    async def copy(self, request: nodes_pb2.FetchBlock) -> nodes_pb2.BlockStored:
        return nodes_pb2.BlockStored(cid=request.cid, ok=False, error="a simulated node")

    async def prove(self, audit: nodes_pb2.AuditChallenge) -> nodes_pb2.AuditProof:
        return nodes_pb2.AuditProof(cid=audit.cid)


class _SimNode:
    """Answers an embed task at once: unit vectors of the model's width, and the digest of the
    task's tokens. Records when each result left and each next task arrived."""

    vectors = np.full((64, DIM), 1 / np.sqrt(DIM), dtype=np.float32)

    def __init__(self) -> None:
        self.sent_at: float | None = None
        self.waits: list[float] = []
        self.leases: list[float] = []

    async def run(self, assignment: Any, send: Any, cancelled: Any) -> nodes_pb2.LeaseRequest:
        now = time.monotonic()
        self.leases.append(now)
        if self.sent_at is not None:
            self.waits.append(now - self.sent_at)
        task = embed_pb2.EmbedTask.FromString(assignment.payload)
        windows = [tensors.from_bytes(w.token_ids, "uint32") for w in task.windows]
        output = embed_pb2.EmbedOutput(
            embeddings=tensors.to_proto(self.vectors[: len(windows)], "float32"),
            tokens_sha256=bytes.fromhex(windows_digest(windows)),
        ).SerializeToString()
        self.sent_at = time.monotonic()
        return nodes_pb2.LeaseRequest(
            result=nodes_pb2.ShardResult(
                shard_id=assignment.shard_id,
                output=output,
                digest=hashlib.sha256(output).hexdigest(),
                tokens=sum(len(w) + 2 for w in windows),
                wall_seconds=0.0,
                provider="simulated",
            )
        )


def _simulate(
    addresses: list[str],
    first: int,
    count: int,
    per_connection: int,
    model_sha256: str,
    join_rate: float,
    registered: Any,
    stop: Any,
    out: str,
) -> None:
    """A worker process: `count` simulated nodes (numbered from `first`), joining at
    `join_rate` a second, each starting with coordinator `number % len(addresses)`; their
    figures written to `out` once `stop` is set."""
    from grpc import aio

    from tokenweave.node import NodeConfig, NodeIdentity
    from tokenweave.node._reconnect import Backoff, keep_connected
    from tokenweave.node._session import LeaseSession

    async def main() -> dict[str, list[float]]:
        stopping = asyncio.Event()
        registration = nodes_pb2.RegisterRequest(
            hardware=jobs_pb2.Hardware(cpu_cores=1, memory_bytes=2**30, platform="simulated"),
            models=[jobs_pb2.NodeModel(name=MODEL, sha256=model_sha256, tokens_per_second=1e6)],
            max_inflight_shards=1,
            version=__version__,
            workloads=["embed"],
        )
        channels: dict[tuple[str, int], aio.Channel] = {}
        sims = [_SimNode() for _ in range(count)]
        sessions: dict[int, LeaseSession] = {}
        errors: list[str] = []

        async def node(index: int, sim: _SimNode) -> None:
            """A node's life as the daemon lives it: sessions one after another, with its
            backoff between them (a coordinator under a registration storm refuses some)."""
            number = first + index
            address = addresses[number % len(addresses)]
            key = (address, index // per_connection)
            if key not in channels:
                channels[key] = aio.insecure_channel(
                    address,
                    options=[
                        ("grpc.max_receive_message_length", 64 * 2**20),
                        # A connection of its own: gRPC shares one between the channels of a
                        # process by default, past the coordinator's 100 streams a connection.
                        ("grpc.use_local_subchannel_pool", 1),
                    ],
                )
            config = NodeConfig(coordinator=address, concurrent_shards=1, shutdown_grace_s=1.0)
            identity = NodeIdentity(secrets.token_bytes(32))
            stub = nodes_pb2_grpc.NodeServiceStub(channels[key])
            data = data_pb2_grpc.DataServiceStub(channels[key])

            async def attempt(stop: asyncio.Event) -> bool:
                session = LeaseSession(config, identity, registration, _NoBlocks(), sim.run)
                sessions[number] = session
                try:
                    await session.serve(stub, data, stop)
                except Exception as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return session.registered

            await keep_connected(attempt, stopping, Backoff(0.5, 10.0))

        async def count_registered() -> None:
            while not stopping.is_set():
                registered.value = sum(s.registered for s in sessions.values())
                if stop.is_set():
                    stopping.set()
                await asyncio.sleep(0.2)

        tasks = []
        for index, sim in enumerate(sims):  # nodes join at `join_rate` a second, as they come
            tasks.append(asyncio.create_task(node(index, sim)))
            await asyncio.sleep(1 / join_rate)
        await count_registered()
        await asyncio.wait(tasks, timeout=10)
        if errors:
            print(f"{len(errors)} sessions of simulated nodes ended in errors, e.g. {errors[0]}")
        return {
            "waits": [w for s in sims for w in s.waits],
            "leases": [t for s in sims for t in s.leases],
        }

    Path(out).write_text(json.dumps(asyncio.run(main())))


def _job_documents(shards: int) -> list[str]:
    """Documents whose windows of WINDOW tokens (no overlap) number about `shards`."""
    text = shipped_text().read_text(encoding="utf-8")
    prepared = prepare_model(MODEL, default_cache_dir())
    from tokenweave.models import load_tokenizer

    tokens = len(load_tokenizer(prepared).encode(text, add_special_tokens=False).ids)
    per_document = tokens // (WINDOW - 2)
    whole, part = divmod(shards, per_document)
    return [text] * whole + ([text[: len(text) * part // per_document]] if part else [])


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 2)


def run_case(
    nodes: int,
    coordinators: int,
    documents: list[str],
    database: str | None,
    processes: int,
    per_connection: int,
    join_rate: float,
    root: Path,
) -> dict[str, Any]:
    """One configuration: start the coordinators, the simulated nodes, run the job, measure."""
    args = (
        "--verify-fraction", "0",
        "--vetting-results", "0",
        "--windows-per-shard", "1",
        "--max-connections", str(max(512, 2 * nodes // per_connection + 64)),
        "--rate-limit", "1000000",
        "--rate-burst", "1000000",
        "--max-tokens-per-job", str(10**9),
        "--max-tokens-per-hour", str(10**10),
    )  # fmt: skip
    clusters = []
    for i in range(coordinators):
        db = ("--db", database) if database else ()
        clusters.append(
            LocalCluster(
                root=root / f"c{nodes}-{coordinators}-{i}", tls=False, coordinator_args=(*args, *db)
            )
        )
    rss = {"max": 0}
    sampling = threading.Event()
    context = mp.get_context("spawn")
    stop = context.Event()
    counters = [context.Value("i", 0) for _ in range(processes)]
    workers: list[Any] = []
    try:
        for cluster in clusters:
            cluster.start_coordinator()
        pids = [c.coordinator.process.pid for c in clusters if c.coordinator is not None]

        def sample() -> None:
            while not sampling.is_set():
                with contextlib.suppress(psutil.Error):
                    total = sum(psutil.Process(pid).memory_info().rss for pid in pids)
                    rss["max"] = max(rss["max"], total)
                time.sleep(0.5)

        threading.Thread(target=sample, daemon=True).start()
        addresses = [c.address for c in clusters]
        sha = prepare_model(MODEL, default_cache_dir()).sha256
        share = -(-nodes // processes)
        outs = [str(root / f"sim-{nodes}-{coordinators}-{p}.json") for p in range(processes)]
        started = time.monotonic()
        for p in range(processes):
            count = min(share, nodes - p * share)
            worker = context.Process(
                target=_simulate,
                args=(
                    addresses,
                    p * share,
                    count,
                    per_connection,
                    sha,
                    join_rate / processes,
                    counters[p],
                    stop,
                    outs[p],
                ),
            )
            worker.start()
            workers.append(worker)
        deadline = time.monotonic() + 60 + 3 * nodes / join_rate
        while sum(c.value for c in counters) < nodes:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{sum(c.value for c in counters)} of {nodes} registered")
            time.sleep(0.2)
        joined = time.monotonic() - started
        print(f"  {nodes:,} nodes registered in {joined:.1f} s", flush=True)
        with clusters[0].client(timeout=600) as client:
            submitted = time.monotonic()
            job = client.embed(documents, window=WINDOW, overlap=0)
            info = job.wait()
            elapsed = time.monotonic() - submitted
        stop.set()
        for worker in workers:
            worker.join(60)
        figures: dict[str, list[float]] = {"waits": [], "leases": []}
        for out in outs:
            data = json.loads(Path(out).read_text())
            for name in figures:
                figures[name] += data[name]
        leases = sorted(figures["leases"])
        low, high = _percentile(leases, 10) or 0.0, _percentile(leases, 90) or 0.0
        middle = sum(low <= t <= high for t in leases)
        return {
            "nodes": nodes,
            "coordinators": coordinators,
            "database": "postgresql" if database else "sqlite",
            "shards": info.shards_total,
            "status": info.status.name,
            "register_s": round(joined, 2),
            "job_s": round(elapsed, 2),
            "placements_per_s": round(middle / (high - low), 1) if high > low else None,
            "end_to_end_shards_per_s": round(info.shards_total / elapsed, 1),
            "lease_p50_ms": _ms(_percentile(figures["waits"], 50)),
            "lease_p99_ms": _ms(_percentile(figures["waits"], 99)),
            "rss_mb": round(rss["max"] / 2**20),
        }
    finally:
        sampling.set()
        stop.set()
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
        for cluster in clusters:
            cluster.stop(timeout=20)


def ray_tasks(python: str, tasks: int) -> dict[str, Any] | None:
    """Ray's tasks/s on this machine (benchmarks/ray_tasks.py run by `python`)."""
    proc = subprocess.run(
        [python, str(HERE / "ray_tasks.py"), "--tasks", str(tasks)],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    if proc.returncode != 0:
        print(f"Ray left out: {proc.stderr.strip()[-400:]}")
        return None
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--nodes", default="1000,10000", help="numbers of simulated nodes")
    parser.add_argument("--shards", type=int, default=100_000)
    parser.add_argument("--coordinators", default="1", help="numbers of coordinators, e.g. 1,2,3")
    parser.add_argument("--postgres", metavar="URL", help="a server for the coordinators' database")
    parser.add_argument("--processes", type=int, default=2, help="processes of simulated nodes")
    parser.add_argument("--nodes-per-connection", type=int, default=20)
    parser.add_argument(
        "--join-rate", type=float, default=200.0, help="nodes joining a second, in all (200)"
    )
    parser.add_argument("--ray", metavar="PYTHON", help="a Python with ray, for the baseline")
    parser.add_argument("--ray-tasks", type=int, default=20_000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", type=Path, help="keep the processes' data and logs here")
    args = parser.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    coordinator_counts = [int(n) for n in args.coordinators.split(",")]
    if any(c > 1 for c in coordinator_counts) and not args.postgres:
        parser.error("several coordinators share a PostgreSQL database: give --postgres URL")

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    documents = _job_documents(args.shards)
    report: dict[str, Any] = {"cases": [], "machine": platform.machine(), "cpus": os.cpu_count()}
    with contextlib.ExitStack() as stack:
        tmp = str(args.keep) if args.keep else stack.enter_context(tempfile.TemporaryDirectory())
        for coordinators in coordinator_counts:
            for nodes in counts:
                database = None
                if args.postgres:
                    database = _fresh_database(args.postgres, f"scale_{nodes}_{coordinators}")
                print(f"{nodes:,} nodes, {coordinators} coordinator(s):", flush=True)
                case = run_case(
                    nodes,
                    coordinators,
                    documents,
                    database,
                    args.processes,
                    args.nodes_per_connection,
                    args.join_rate,
                    Path(tmp),
                )
                report["cases"].append(case)
                print(
                    f"  {case['shards']:,} shards in {case['job_s']:.1f} s: "
                    f"{case['placements_per_s']} placements/s, lease p50 "
                    f"{case['lease_p50_ms']} ms, p99 {case['lease_p99_ms']} ms, "
                    f"RSS {case['rss_mb']} MB ({case['status']})",
                    flush=True,
                )
    if args.ray:
        report["ray"] = ray_tasks(args.ray, args.ray_tasks)
        if report["ray"]:
            print(
                f"Ray {report['ray']['version']}: {report['ray']['sync_per_s']:,.0f} tasks/s "
                f"synchronous, {report['ray']['async_per_s']:,.0f} asynchronous"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def _fresh_database(server: str, name: str) -> str:
    """A new, empty database `tokenweave_bench_<name>` on `server` (dropped first if there)."""
    import asyncpg

    full = f"tokenweave_bench_{name}"

    async def make() -> None:
        dsn = server.replace("postgresql+asyncpg://", "postgresql://").rstrip("/") + "/postgres"
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{full}" WITH (FORCE)')
            await connection.execute(f'CREATE DATABASE "{full}"')
        finally:
            await connection.close()

    asyncio.run(make())
    return f"{server.rstrip('/')}/{full}"


if __name__ == "__main__":
    sys.exit(main())
