"""End-to-end tokens/s of one job through coordinator + one node, beside raw onnxruntime.

    python benchmarks/bench_embed.py [--text FILE] [--repeats N] [--batch-size N]

Both sides embed the same windows (the shipped Book of Genesis by default, ~54k tokens, 256-token
windows with 32 overlap): the baseline is a plain onnxruntime session in this process running
batches of the same size as the node; the network side is a coordinator and one node as separate
processes on loopback, timed from SubmitJob until the last result arrives at the client. They run
one after the other, never together, and each keeps its best of `--repeats`. Target ratio: ≥ 0.9.

The same cluster then runs the same job as a user would: `tokenweave submit embed FILE --json` in
a new process, timed from the command's start until it exits with the result printed, so that the
second ratio also counts the command's start-up, reading the file and printing the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime

from tokenweave.cli import LocalCluster
from tokenweave.cli._demo import shipped_text
from tokenweave.models import default_cache_dir, load_tokenizer, prepare_model
from tokenweave.workloads import WindowPlan


def raw_onnxruntime(text: str, cache: Path, batch_size: int, repeats: int) -> tuple[int, float]:
    """(model tokens, best seconds) for the job's windows through a bare InferenceSession."""
    prepared = prepare_model("all-minilm-l6-v2", cache)
    tokenizer = load_tokenizer(prepared)
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    spans = WindowPlan(256, 32).spans(0, len(ids))
    windows = [[cls_id, *ids[s.start : s.end], sep_id] for s in spans]
    batches = []
    for first in range(0, len(windows), batch_size):
        group = windows[first : first + batch_size]
        width = max(len(w) for w in group)
        input_ids = np.zeros((len(group), width), dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for row, w in enumerate(group):
            input_ids[row, : len(w)] = w
            mask[row, : len(w)] = 1
        batches.append({"input_ids": input_ids, "attention_mask": mask})
    session = onnxruntime.InferenceSession(
        str(prepared.onnx_path), providers=["CPUExecutionProvider"]
    )
    session.run(None, batches[0])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            session.run(None, batch)
        best = min(best, time.perf_counter() - started)
    return sum(len(w) for w in windows), best


def through_the_cli(address: str, path: Path, repeats: int) -> tuple[int, float]:
    """(model tokens, best seconds) for `tokenweave submit embed FILE --json` (this interpreter's,
    as `python -m tokenweave.cli`), from the command's start to its exit."""
    command = [sys.executable, "-m", "tokenweave.cli", "submit", "embed", str(path), "--json"]
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        proc = subprocess.run(
            [*command, "--coordinator", address], capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr}")
        best = min(best, seconds)
        tokens = json.loads(proc.stdout)["tokens_processed"]
    return tokens, best


def through_the_network(
    text: str, cache: Path, batch_size: int, repeats: int
) -> tuple[int, float, int, float]:
    """(model tokens, best seconds) through the SDK, then the same through the CLI."""
    with tempfile.TemporaryDirectory(prefix="tokenweave-bench-") as tmp:
        cluster = LocalCluster(
            root=Path(tmp), model_cache=cache, node_args=("--batch-size", str(batch_size))
        )
        try:
            cluster.start(nodes=1)
            best, tokens = float("inf"), 0
            with cluster.client() as client:
                for _ in range(repeats):
                    started = time.perf_counter()
                    result = client.embed([("bench.txt", text)]).result()
                    best = min(best, time.perf_counter() - started)
                    tokens = result.job.tokens_processed
            path = Path(tmp) / "bench.txt"
            path.write_text(text, encoding="utf-8")
            cli_tokens, cli_best = through_the_cli(cluster.address, path, repeats)
            return tokens, best, cli_tokens, cli_best
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--text", type=Path, default=shipped_text())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    text = args.text.read_text(encoding="utf-8")
    cache = default_cache_dir()

    net_tokens, net_seconds, cli_tokens, cli_seconds = through_the_network(
        text, cache, args.batch_size, args.repeats
    )
    raw_tokens, raw_seconds = raw_onnxruntime(text, cache, args.batch_size, args.repeats)
    assert raw_tokens == net_tokens == cli_tokens, (raw_tokens, net_tokens, cli_tokens)

    raw_rate, net_rate = raw_tokens / raw_seconds, net_tokens / net_seconds
    cli_rate = cli_tokens / cli_seconds
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"job: {args.text.name}, {raw_tokens:,} model tokens, batch {args.batch_size}")
    print(f"raw onnxruntime, one process:      {raw_rate:10,.0f} tokens/s ({raw_seconds:.2f} s)")
    print(f"coordinator + 1 node, end to end:  {net_rate:10,.0f} tokens/s ({net_seconds:.2f} s)")
    print(f"`tokenweave submit embed --json`:  {cli_rate:10,.0f} tokens/s ({cli_seconds:.2f} s)")
    print(f"ratio (end to end / raw):          {net_rate / raw_rate:10.3f}   (target ≥ 0.9)")
    print(f"ratio (CLI command / raw):         {cli_rate / raw_rate:10.3f}")


if __name__ == "__main__":
    main()
