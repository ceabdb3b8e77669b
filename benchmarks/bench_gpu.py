"""MiniLM on one GPU: tokens/s of the node's ONNX Runtime paths beside PyTorch fp16, same windows.

    python benchmarks/bench_gpu.py [--gpu 0] [--batches 64,256,1024] [--seq 256] [--json FILE]

Everything runs in this one process, one variant after another on the same GPU and the same
token windows (`--seq` tokens each, [CLS] and [SEP] included):

- onnxruntime fp32, the standard graph (what a node ran on a GPU before #13);
- onnxruntime fp16, the fused graph (Attention, SkipLayerNormalization, BiasGelu), plain `run`;
- the same with I/O binding: outputs bound on the device, inputs copied from the host, then with
  the inputs already on the device (the upper bound of what binding can save);
- EmbeddingSession with the fused fp16 graph: the node's own code path (packing included),
  from the model cache as a GPU node prepares it (`prepare_model(..., fp16=True)`);
- PyTorch fp16 (transformers' BertModel, SDPA attention, the same weights), mean-pooled and
  normalised on the device: the baseline. Goal for the node's path: ≥ 0.7×.

`--llm` adds SmolLM2: the fp16 decoder with its key-value cache kept on the GPU, the CPU's
exact graph run on the GPU, the exact decoder on the CPU (the verifier's reference: greedy
replies compared, differing ones re-scored as a verifier would) and PyTorch fp16 from the same
GGUF on the same GPU: time to first token and decode tokens/s.

Then a node's real load, shards of 16 windows: one at a time, and 16 at once through the
DynamicBatcher (a GPU node's default).

Agreement: 256 windows of the shipped text, of mixed lengths, embedded by the standard fp32
graph on the CPU (the verifier's reference) and by each GPU path: the lowest cosine per window
(goal ≥ 0.9999, so verification between a CPU node and a GPU node passes for honest nodes).

Without CUDA (no GPU, or the CPU build of onnxruntime) it says so and runs the onnxruntime
variants on the CPU with small sizes: a check that the script works, not a measurement.
PyTorch is optional: without it the baseline is left out and said to be.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from gpu_llm import llm_section  # benchmarks/gpu_llm.py, beside this script
from safetensors.numpy import load_file

from tokenweave.models import DynamicBatcher, default_cache_dir, prepare_model
from tokenweave.models._cache import PreparedModel
from tokenweave.models._session import CPU_PROVIDER, CUDA_PROVIDER, EmbeddingSession
from tokenweave.models._source import locate_source
from tokenweave.models._tokenizer import load_tokenizer

MODEL = "all-minilm-l6-v2"
Batch = dict[str, npt.NDArray[np.int64]]


def timed(run: Callable[[], object], tokens: int, min_seconds: float) -> float:
    """Tokens/s of ``run`` (``tokens`` a call): two warm-up calls, then calls until
    ``min_seconds`` have passed (at least three)."""
    run()
    run()
    calls, started = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - started < min_seconds:
        run()
        calls += 1
    return tokens * calls / (time.perf_counter() - started)


def full_windows(batch: int, seq: int, vocab: int, rng: np.random.Generator) -> Batch:
    ids = rng.integers(1000, vocab, size=(batch, seq), dtype=np.int64)
    ids[:, 0], ids[:, -1] = 101, 102
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def text_windows(prepared: PreparedModel, count: int, rng: np.random.Generator) -> list[list[int]]:
    """``count`` windows of the shipped text, 8 to 254 tokens long, without special tokens."""
    text = Path(__file__).resolve().parents[1] / "tokenweave" / "cli" / "data" / "genesis.txt"
    ids = load_tokenizer(prepared).encode(text.read_text("utf-8"), add_special_tokens=False).ids
    lengths = rng.integers(8, prepared.spec.max_tokens - 1, size=count)
    starts = rng.integers(0, len(ids) - prepared.spec.max_tokens, size=count)
    return [ids[s : s + n] for s, n in zip(starts, lengths, strict=True)]


def gpu_description() -> str:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "no nvidia-smi"
    return out.splitlines()[0] if out else "no GPU listed"


class Torch:
    """PyTorch fp16 BertModel with sentence-transformers' pooling: the baseline."""

    def __init__(self, source_folder: Path, device: str) -> None:
        import torch
        import transformers

        self.torch = torch
        self.device = device
        config = transformers.BertConfig.from_pretrained(str(source_folder))
        model = transformers.BertModel(config, add_pooling_layer=False)
        weights = {
            k: torch.from_numpy(v)
            for k, v in load_file(str(source_folder / "model.safetensors")).items()
        }
        missing = model.load_state_dict(weights, strict=False).missing_keys
        if missing:
            raise RuntimeError(f"BertModel weights missing from the file: {missing}")
        self.model = model.half().to(device).eval()
        attention = getattr(model.config, "_attn_implementation", "?")
        self.version = (
            f"torch {torch.__version__}, transformers {transformers.__version__}, "
            f"{attention} attention"
        )

    def embed(self, batch: Batch) -> npt.NDArray[np.float32]:
        torch = self.torch
        with torch.inference_mode():
            ids = torch.from_numpy(batch["input_ids"]).to(self.device, non_blocking=True)
            mask = torch.from_numpy(batch["attention_mask"]).to(self.device, non_blocking=True)
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * weights).sum(1).float() / weights.sum(1).float().clamp(min=1e-9)
            unit = torch.nn.functional.normalize(mean, dim=-1)
            return unit.cpu().numpy()  # type: ignore[no-any-return]


def session(model: bytes | str, providers: list[Any]) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model, options, providers=providers)


def bound_runner(
    sess: ort.InferenceSession, batch: Batch, gpu: int, inputs_on_device: bool
) -> Callable[[], object]:
    """One call of ``sess`` with its output bound on the device (copied back after)."""
    binding = sess.io_binding()
    staged = {
        name: ort.OrtValue.ortvalue_from_numpy(array, "cuda", gpu) for name, array in batch.items()
    }

    def run() -> object:
        for name, array in batch.items():
            if inputs_on_device:
                binding.bind_ortvalue_input(name, staged[name])
            else:
                binding.bind_cpu_input(name, array)
        binding.bind_output("embeddings", "cuda", gpu)
        sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    return run


def shards_section(
    session: EmbeddingSession,
    vocab: int,
    seq: int,
    rng: np.random.Generator,
    seconds: float,
    count: int = 64,
) -> dict[str, float]:
    """A node's real load: shards of 16 windows (the coordinator's default). One shard a call,
    as a CPU node runs them, against shards run at once (`threads` of them) whose windows the
    DynamicBatcher joins into batches of up to 256 (with `workers` runner threads: with two,
    one packs a batch while the other's runs)."""
    shards = [list(full_windows(16, seq, vocab, rng)["input_ids"][:, 1:-1]) for _ in range(count)]
    tokens = count * 16 * seq
    rates = {
        "one shard at a time": timed(
            lambda: [session.embed_windows(s) for s in shards], tokens, seconds
        )
    }
    print(f"\nshards of 16 windows × {seq} tokens ({count} of them a round):")
    print(f"  {'one shard at a time':42s} {rates['one shard at a time'] / 1e6:8.3f} M tokens/s")
    for threads in (16, 32, 64):
        for workers in (1, 2):
            batcher = DynamicBatcher(session, max_batch=256, max_delay_s=0.002, workers=workers)
            with ThreadPoolExecutor(threads) as pool:
                rate = timed(
                    lambda b=batcher, p=pool: list(p.map(b.embed_windows, shards)),
                    tokens,
                    seconds,
                )
            batcher.close()
            name = f"{threads} shards at once, {workers} runner(s)"
            rates[name] = rate
            print(
                f"  {name:42s} {rate / 1e6:8.3f} M tokens/s  "
                f"(batches of {batcher.stats.mean_batch:.0f} windows)"
            )
    return rates


def lowest_cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return float(cos.min())


def minilm(
    report: dict[str, Any],
    args: argparse.Namespace,
    providers: list[Any],
    cuda: bool,
    batches: list[int],
    seq: int,
) -> None:
    """Agreement, throughput by batch size, and shards of 16 windows (into `report`)."""
    gpu = args.gpu
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    prepared = prepare_model(MODEL, default_cache_dir(), fp16=True)  # as a GPU node does
    report["prepare_s"] = round(time.perf_counter() - started, 2)
    assert prepared.fp16_path is not None
    source = locate_source(prepared.spec)
    torch_model: Torch | None = None
    try:
        torch_model = Torch(source.folder, f"cuda:{gpu}" if cuda else "cpu")
        report["torch"] = torch_model.version
    except ImportError as exc:
        print(f"PyTorch baseline left out: {exc}")
    except Exception as exc:
        print(f"PyTorch baseline left out: {type(exc).__name__}: {exc}")

    standard = session(str(prepared.onnx_path), providers)
    fused_session = session(str(prepared.fp16_path), providers)
    node_session = EmbeddingSession(
        prepared, providers=providers, batch_size=max(batches), fp16=True
    )
    report["fused_providers"] = fused_session.get_providers()

    # Agreement with the verifier's reference: the standard graph, fp32, on the CPU.
    windows = text_windows(prepared, 256, rng)
    reference = EmbeddingSession(prepared, providers=[CPU_PROVIDER], batch_size=64, fp16=False)
    expected = reference.embed_windows(windows)
    gpu_standard = EmbeddingSession(prepared, providers=providers, batch_size=64, fp16=False)
    agreement = {
        "onnxruntime fp32 standard": lowest_cosine(expected, gpu_standard.embed_windows(windows)),
        "onnxruntime fp16 fused": lowest_cosine(expected, node_session.embed_windows(windows)),
    }
    if torch_model is not None:
        special = reference.special_tokens
        rows = []
        for window in windows:
            ids = np.full((1, len(window) + 2), special.pad_id, dtype=np.int64)
            ids[0, 0], ids[0, 1:-1], ids[0, -1] = special.cls_id, window, special.sep_id
            rows.append(torch_model.embed({"input_ids": ids, "attention_mask": np.ones_like(ids)}))
        agreement["pytorch fp16"] = lowest_cosine(expected, np.concatenate(rows))
    report["lowest_cosine_vs_cpu_fp32"] = agreement
    print("\nlowest cosine per window against the CPU fp32 reference (goal ≥ 0.9999):")
    for name, value in agreement.items():
        print(f"  {name:32s} {value:.6f}")

    vocab = int(load_file(str(source.weights))["embeddings.word_embeddings.weight"].shape[0])
    throughput: dict[str, dict[str, float]] = {}
    for batch_size in batches:
        batch = full_windows(batch_size, seq, vocab, rng)
        tokens = batch_size * seq
        contents = list(batch["input_ids"][:, 1:-1])  # windows as a node holds them
        variants: dict[str, Callable[[], object]] = {
            "onnxruntime fp32 standard": lambda b=batch: standard.run(None, b),
            "onnxruntime fp16 fused": lambda b=batch: fused_session.run(None, b),
            "node path (EmbeddingSession fp16)": lambda c=contents: node_session.embed_windows(c),
        }
        if cuda:
            variants["fp16 fused + I/O binding"] = bound_runner(fused_session, batch, gpu, False)
            variants["fp16 fused + I/O binding, inputs on GPU"] = bound_runner(
                fused_session, batch, gpu, True
            )
        if torch_model is not None:
            variants["pytorch fp16 (baseline)"] = lambda b=batch: torch_model.embed(b)
        rates = {name: timed(run, tokens, args.seconds) for name, run in variants.items()}
        throughput[str(batch_size)] = rates
        baseline = rates.get("pytorch fp16 (baseline)")
        print(f"\nbatch {batch_size} × {seq} tokens:")
        for name, rate in rates.items():
            ratio = f"{rate / baseline:6.2f}× pytorch" if baseline else ""
            print(f"  {name:42s} {rate / 1e6:8.3f} M tokens/s  {ratio}")
    report["tokens_per_s"] = throughput
    report["shards"] = shards_section(
        node_session, vocab, seq, rng, args.seconds, 64 if cuda else 4
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gpu", type=int, default=0)
    parser.add_argument("--batches", default="64,256,1024", help="batch sizes (windows a call)")
    parser.add_argument("--seq", type=int, default=256, help="tokens a window, specials included")
    parser.add_argument("--seconds", type=float, default=2.0, help="time each variant this long")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--only-llm", action="store_true", help="skip MiniLM (with --llm)")
    parser.add_argument(
        "--llm",
        action="store_true",
        help="also run SmolLM2's decoder (the CPU graph, as a node loads it) on the GPU: greedy "
        "output against the CPU's, time to first token, decode tokens/s",
    )
    args = parser.parse_args()

    cuda = CUDA_PROVIDER in ort.get_available_providers()
    gpu = args.gpu
    providers: list[Any] = (
        [(CUDA_PROVIDER, {"device_id": str(gpu)}), CPU_PROVIDER] if cuda else [CPU_PROVIDER]
    )
    batches = [int(b) for b in args.batches.split(",")]
    seq = args.seq
    if not cuda:
        print("no CUDA provider in this onnxruntime: running the CPU fallback, small sizes only")
        batches, seq, args.seconds = [min(b, 8) for b in batches[:1]], min(seq, 64), 0.5
    report: dict[str, Any] = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "gpu": gpu_description() if cuda else "none (CPU fallback)",
        "onnxruntime": ort.__version__,
        "providers": ort.get_available_providers(),
    }
    print(json.dumps(report, indent=1))

    if not args.only_llm:
        minilm(report, args, providers, cuda, batches, seq)
    if args.llm or args.only_llm:
        try:
            report["llm"] = llm_section(providers)
        except Exception as exc:
            print(f"\nLLM section failed: {type(exc).__name__}: {exc}")
            report["llm"] = {"error": f"{type(exc).__name__}: {exc}"}
    print("\nnot measured by this script: coordinator + GPU node end to end")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
