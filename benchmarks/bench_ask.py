"""Map-reduce speed-up: one ask job over the book on 1, 2 and 3 nodes.

    python benchmarks/bench_ask.py [--nodes 1,2,3] [--whole] [--threads N]

For each node count, a coordinator and that many nodes start on loopback (every task runs once:
--verify-fraction 0 and --vetting-results 0, so the figure is the map-reduce's own), and one
`ask` job runs the demo's question over the demo's text (the book's chapters 1-12, 10,824
tokens; `--whole`: all of it, 57,307 tokens), timed from SubmitJob until the answer arrives.
Printed: seconds, task tokens/s (prompts and notes as planned), windows, the answer, and the
speed-up against the first node count. Nodes share this machine's cores: on a 2-core machine
more nodes contend for the same two cores (each node gets --threads, by default the cores
divided by the nodes, at least 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from tokenweave.cli import LocalCluster
from tokenweave.cli._demo import ASK_UNTIL, DEFAULT_QUESTION, shipped_text
from tokenweave.models import default_cache_dir, prepare_generator, prepare_model

GENERATOR = "smollm2-135m-instruct"
EMBEDDER = "all-minilm-l6-v2"


def run(nodes: int, text: str, question: str, threads: int, cache: Path) -> dict[str, object]:
    models = ("--models", f"{EMBEDDER},{GENERATOR}")
    with tempfile.TemporaryDirectory(prefix="bench-ask-") as tmp:
        cluster = LocalCluster(
            root=Path(tmp),
            model_cache=cache,
            coordinator_args=("--verify-fraction", "0", "--vetting-results", "0", *models),
            node_args=(*models, "--threads", str(threads)),
        )
        try:
            cluster.start(nodes)
            with cluster.client(timeout=600) as client:
                start = time.perf_counter()
                job = client.ask([("genesis", text)], question)
                answer = job.answer()
                seconds = time.perf_counter() - start
                info = job.refresh()
        finally:
            cluster.stop()
    return {
        "nodes": nodes,
        "seconds": seconds,
        "tokens_per_s": info.tokens_processed / seconds,
        "windows": info.windows,
        "shards": info.shards_total,
        "answer": answer.text,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", default="1,2,3", help="node counts, comma-separated")
    parser.add_argument("--whole", action="store_true", help="the whole book, not chapters 1-12")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--threads", type=int, default=0, help="per node (0: cores / nodes)")
    args = parser.parse_args()
    cache = default_cache_dir()
    prepare_model(EMBEDDER, cache)
    prepare_generator(GENERATOR, cache)
    book = shipped_text().read_text(encoding="utf-8")
    text = book if args.whole else book[: book.find(ASK_UNTIL)]
    cores = os.cpu_count() or 1
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores")
    print(f"question: {args.question!r}; text: {len(text):,} characters")
    rows = []
    for nodes in (int(n) for n in args.nodes.split(",")):
        threads = args.threads or max(1, cores // nodes)
        row = run(nodes, text, args.question, threads, cache)
        rows.append(row)
        speedup = rows[0]["seconds"] / row["seconds"]  # type: ignore[operator]
        print(
            f"{nodes} node(s) × {threads} threads: {row['seconds']:.1f} s, "
            f"{row['tokens_per_s']:,.0f} task tokens/s, {row['windows']} windows in "
            f"{row['shards']} shards, speed-up {speedup:.2f}× — {row['answer']!r}",
            flush=True,
        )


if __name__ == "__main__":
    main()
