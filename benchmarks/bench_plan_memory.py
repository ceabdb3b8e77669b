"""The coordinator's memory while it plans a large job, against the bytes of the job's text.

    python benchmarks/bench_plan_memory.py [--documents 7] [--mib 8]

A coordinator process (no nodes: the job stays queued once planned) is sent one job of
`--documents` texts of `--mib` MiB each, the largest a 64 MiB message holds by default. Its
resident memory is sampled every 20 ms from before the call until the job is stored; printed: the
text's bytes, the coordinator's RSS before, at its peak and after, and the ratio of the growth to
the text (issue 10 measured 7.1 GB peak for 8 × 8 MiB before the limits).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import psutil

from tokenweave.cli import LocalCluster
from tokenweave.cli._demo import shipped_text

MIB = 1024 * 1024


def _text(size: int) -> str:
    book = shipped_text().read_text(encoding="utf-8")
    return (book * (size // len(book) + 1))[:size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=7)
    parser.add_argument("--mib", type=float, default=8.0)
    args = parser.parse_args()
    size = int(args.mib * MIB)
    docs = [(f"doc{i}", _text(size)) for i in range(args.documents)]
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster(
            root=Path(tmp),
            coordinator_args=(
                "--max-tokens-per-job",
                str(10**9),
                "--max-tokens-per-hour",
                str(10**9),
            ),
        )
        with cluster:
            cluster.start_coordinator()
            assert cluster.coordinator is not None
            process = psutil.Process(cluster.coordinator.process.pid)
            before = process.memory_info().rss
            peak = before
            done = threading.Event()

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, process.memory_info().rss)
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample)
            sampler.start()
            started = time.perf_counter()
            with cluster.client(timeout=600) as client:
                try:
                    job = client.embed(docs)
                    outcome = f"job {job.id}: {job.info.shards_total} shards"
                except Exception as exc:  # a refusal is a finding here
                    outcome = f"refused: {type(exc).__name__}: {exc}"
            elapsed = time.perf_counter() - started
            done.set()
            sampler.join()
            after = process.memory_info().rss
    text = size * args.documents
    print(f"{outcome} in {elapsed:.1f} s")
    print(f"text {text / MIB:,.0f} MiB; coordinator RSS before {before / MIB:,.0f} MiB, ", end="")
    print(f"peak {peak / MIB:,.0f} MiB, after {after / MIB:,.0f} MiB")
    print(f"peak growth / text bytes: {(peak - before) / text:.1f}")


if __name__ == "__main__":
    main()
