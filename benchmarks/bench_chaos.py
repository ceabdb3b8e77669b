"""Chaos: jobs on a local testnet with one random node killed (kill -9) during each.

    python benchmarks/bench_chaos.py [--jobs 100] [--nodes 3]

A coordinator and `--nodes` node processes run on this machine (embedded chain). First the jobs
run undisturbed (the clean run); then each job is submitted again and, once its first shard is
done, a random node is killed with SIGKILL and started again on its data dir (same key). Prints
jobs completed, shards lost, tokens paid twice (from the coordinator's ledger), whether every
output equals the clean run's, and the slowdown in mean job time. The first three must read
N, 0, 0.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tokenweave.cli import LocalCluster
from tokenweave.client import Client, EmbedResult

GENESIS = Path(__file__).resolve().parents[1] / "tokenweave" / "cli" / "data" / "genesis.txt"


def documents(count: int) -> list[str]:
    """`count` different passages of Genesis, ~1,500 tokens each."""
    text = GENESIS.read_text(encoding="utf-8")
    size = 6_000
    return [text[(i * 997) % (len(text) - size) :][:size] for i in range(count)]


def run(client: Client, text: str) -> tuple[EmbedResult | None, float, str]:
    started = time.perf_counter()
    job = client.embed([text], window=128, overlap=16)
    try:
        return job.result(), time.perf_counter() - started, ""
    except Exception as exc:  # a failed job is a finding here, not a crash of the benchmark
        return None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"


def ledger_check(cluster: LocalCluster) -> tuple[int, int, int]:
    """(shards done without exactly one ledger row, tokens paid twice, tokens paid - processed)."""
    path = cluster.root / "coordinator" / "coordinator.db"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        # Rows withheld from a node caught cheating are not payments (none here: no cheater).
        unpaid = db.execute(
            "SELECT count(*) FROM shards s WHERE s.state = 'DONE' AND (SELECT count(*) FROM "
            "ledger l WHERE l.shard_id = s.shard_id AND NOT l.withheld) != 1"
        ).fetchone()[0]
        twice = db.execute(
            "SELECT coalesce(sum(tokens * (n - 1)), 0) FROM (SELECT shard_id, max(tokens) AS "
            "tokens, count(*) AS n FROM ledger WHERE NOT withheld GROUP BY shard_id)"
        ).fetchone()[0]
        paid = db.execute(
            "SELECT coalesce(sum(tokens), 0) FROM ledger WHERE NOT withheld"
        ).fetchone()[0]
        processed = db.execute("SELECT coalesce(sum(tokens_processed), 0) FROM jobs").fetchone()[0]
    return unpaid, twice, paid - processed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    texts = documents(args.jobs)

    with tempfile.TemporaryDirectory(prefix="tokenweave-chaos-") as tmp:
        cluster = LocalCluster(
            root=Path(tmp),
            coordinator_args=("--windows-per-shard", "2"),
            node_args=("--threads", "1", "--batch-size", "8"),
        )
        with cluster:
            cluster.start(args.nodes)
            with cluster.client(timeout=120) as client:
                clean, clean_times = [], []
                for text in texts:
                    result, seconds, error = run(client, text)
                    assert result is not None, f"the clean run failed: {error}"
                    clean.append(result)
                    clean_times.append(seconds)
                print(f"clean run: {args.jobs} jobs, mean {statistics.mean(clean_times):.2f} s")

                completed, lost, identical, chaos_times, errors = 0, 0, 0, [], []
                for i, text in enumerate(texts):
                    started = time.perf_counter()
                    job = client.embed([text], window=128, overlap=16)
                    while job.refresh().shards_done < 1 and not job.info.status.finished:
                        time.sleep(0.01)
                    victim = rng.choice([n for n in cluster.nodes if not n.stopped])
                    victim.kill()
                    cluster.add_node(data_dir=victim.data_dir)  # the same node comes back
                    try:
                        result = job.result()
                    except Exception as exc:
                        errors.append(f"job {i}: {type(exc).__name__}: {exc}")
                        lost += job.refresh().shards_total - job.info.shards_done
                        continue
                    chaos_times.append(time.perf_counter() - started)
                    completed += 1
                    lost += result.job.shards_total - result.job.shards_done
                    same = all(
                        np.array_equal(a.spans, b.spans)
                        and np.allclose(a.window_embeddings, b.window_embeddings, atol=1e-5)
                        for a, b in zip(result.documents, clean[i].documents, strict=True)
                    )
                    identical += same
                    cluster.wait_for_nodes(args.nodes)
                unpaid, twice, excess = ledger_check(cluster)

    slowdown = statistics.mean(chaos_times) / statistics.mean(clean_times) if chaos_times else 0
    print(f"jobs completed:             {completed} of {args.jobs}")
    print(f"shards lost:                {lost}")
    print(f"tokens paid twice:          {twice}")
    print(f"done shards not paid once:  {unpaid}; tokens paid - tokens processed: {excess}")
    print(f"outputs equal to the clean run: {identical} of {completed}")
    print(f"slowdown (mean job time):   {slowdown:.2f}x")
    for error in errors:
        print("  ", error)


if __name__ == "__main__":
    main()
