"""End-to-end tokens/s of one job through coordinator + one node, beside raw onnxruntime.

    python benchmarks/bench_embed.py [--text FILE] [--repeat-text K] [--repeats N] [--batch-size N]
                                     [--gpu N]

Both sides embed the same windows (the shipped Book of Genesis by default, ~54k tokens, 256-token
windows with 32 overlap): the baseline is a plain onnxruntime session in this process running
batches of the same size as the node; the network side is a coordinator and one node as separate
processes on loopback, timed from SubmitJob until the last result arrives at the client. They run
one after the other, never together, and each keeps its best of `--repeats`. Target ratio: ≥ 0.9.

The same cluster then runs the same job as a user would: `tokenweave submit embed FILE --json` in
a new process, timed from the command's start until it exits with the result printed, so that the
second ratio also counts the command's start-up, reading the file and printing the JSON.

With `--gpu N` (a machine with onnxruntime-gpu and an NVIDIA GPU: benchmarks/lent_gpu/run.sh
--end-to-end) the node runs on that GPU as an operator's would (`tokenweave node --gpu N`: the
fused fp16 graph, batches of 256, dynamic batching) and the baseline is the bare GPU session the
node itself uses (EmbeddingSession, fp16, the same batches) in this process: #13's "end to end
÷ bare GPU session". A GPU embeds the shipped text in milliseconds, so `--repeat-text` makes the
job K copies of it (default 1 on the CPU, 64 on a GPU). The coordinator's tokenization is part of
the end-to-end time and not of the baseline's (as on the CPU); it is printed apart.
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
from tokenweave.models import (
    EmbeddingSession,
    PreparedModel,
    default_cache_dir,
    default_providers,
    load_tokenizer,
    prepare_model,
)
from tokenweave.workloads import WindowPlan


def job_windows(
    text: str, cache: Path, fp16: bool = False
) -> tuple[PreparedModel, list[list[int]]]:
    """The model and the job's windows (content ids, without [CLS]/[SEP]), as the coordinator
    plans them; prints how long the tokenization took."""
    prepared = prepare_model("all-minilm-l6-v2", cache, fp16=fp16)
    tokenizer = load_tokenizer(prepared)
    started = time.perf_counter()
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    print(f"tokenizing {len(text):,} characters: {time.perf_counter() - started:.2f} s")
    spans = WindowPlan(256, 32).spans(0, len(ids))
    return prepared, [ids[s.start : s.end] for s in spans]


def bare_gpu_session(
    text: str, cache: Path, gpu: int, batch_size: int, repeats: int
) -> tuple[int, float]:
    """(model tokens, best seconds) for the job's windows through the session a GPU node runs
    (EmbeddingSession on CUDA: the fused fp16 graph), `batch_size` windows a call."""
    prepared, windows = job_windows(text, cache, fp16=True)
    session = EmbeddingSession(
        prepared, providers=default_providers(gpu), batch_size=batch_size, fp16=True
    )
    print(f"bare session: {session.precision} on {session.providers[0]}")
    session.embed_windows(windows[:batch_size])  # warm-up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        session.embed_windows(windows)
        best = min(best, time.perf_counter() - started)
    return sum(len(w) + 2 for w in windows), best


def raw_onnxruntime(text: str, cache: Path, batch_size: int, repeats: int) -> tuple[int, float]:
    """(model tokens, best seconds) for the job's windows through a bare InferenceSession."""
    prepared, contents = job_windows(text, cache)
    tokenizer = load_tokenizer(prepared)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    windows = [[cls_id, *content, sep_id] for content in contents]
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


def through_the_cli(cluster: LocalCluster, path: Path, repeats: int) -> tuple[int, float]:
    """(model tokens, best seconds) for `tokenweave submit embed FILE --json` (this interpreter's,
    as `python -m tokenweave.cli`, with the cluster's address, API key and CA as a user's
    environment gives them), from the command's start to its exit."""
    command = [sys.executable, "-m", "tokenweave.cli", "submit", "embed", str(path), "--json"]
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        proc = subprocess.run(
            command,
            env={**os.environ, **cluster.client_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{proc.stderr}")
        best = min(best, seconds)
        tokens = json.loads(proc.stdout)["tokens_processed"]
    return tokens, best


def through_the_network(
    text: str, cache: Path, node_args: tuple[str, ...], repeats: int
) -> tuple[int, float, int, float]:
    """(model tokens, best seconds) through the SDK, then the same through the CLI."""
    with tempfile.TemporaryDirectory(prefix="tokenweave-bench-") as tmp:
        cluster = LocalCluster(root=Path(tmp), model_cache=cache, node_args=node_args)
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
            cli_tokens, cli_best = through_the_cli(cluster, path, repeats)
            return tokens, best, cli_tokens, cli_best
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--text", type=Path, default=shipped_text())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--repeat-text", type=int, help="the job is K copies of the text (default 1; 64 on a GPU)"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        help="windows a batch, node and baseline (default 32; 256 on a GPU)",
    )
    parser.add_argument("--gpu", type=int, help="run the node and the baseline on this CUDA device")
    args = parser.parse_args()
    on_gpu = args.gpu is not None
    batch_size = args.batch_size or (256 if on_gpu else 32)
    text = "\n\n".join(
        [args.text.read_text(encoding="utf-8")] * (args.repeat_text or (64 if on_gpu else 1))
    )
    cache = default_cache_dir()

    node_args = ("--batch-size", str(batch_size))
    if on_gpu:
        node_args += ("--gpu", str(args.gpu))
    net_tokens, net_seconds, cli_tokens, cli_seconds = through_the_network(
        text, cache, node_args, args.repeats
    )
    if on_gpu:
        raw_tokens, raw_seconds = bare_gpu_session(text, cache, args.gpu, batch_size, args.repeats)
    else:
        raw_tokens, raw_seconds = raw_onnxruntime(text, cache, batch_size, args.repeats)
    assert raw_tokens == net_tokens == cli_tokens, (raw_tokens, net_tokens, cli_tokens)

    raw_rate, net_rate = raw_tokens / raw_seconds, net_tokens / net_seconds
    cli_rate = cli_tokens / cli_seconds
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"job: {args.text.name}, {raw_tokens:,} model tokens, batch {batch_size}")
    baseline = f"bare GPU session (cuda:{args.gpu})" if on_gpu else "raw onnxruntime, one process"
    print(f"{baseline + ':':35s}{raw_rate:10,.0f} tokens/s ({raw_seconds:.2f} s)")
    print(f"coordinator + 1 node, end to end:  {net_rate:10,.0f} tokens/s ({net_seconds:.2f} s)")
    print(f"`tokenweave submit embed --json`:  {cli_rate:10,.0f} tokens/s ({cli_seconds:.2f} s)")
    print(f"ratio (end to end / raw):          {net_rate / raw_rate:10.3f}   (target ≥ 0.9)")
    print(f"ratio (CLI command / raw):         {cli_rate / raw_rate:10.3f}")


if __name__ == "__main__":
    main()
