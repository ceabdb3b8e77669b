"""Generation speed of one node's decoder against llama.cpp, on the same GGUF, in one run.

    python benchmarks/bench_generate.py [--threads 2] [--prompt-tokens 512] [--decode 128]

For each engine — tokenweave's ONNX decoder in each prepared precision, and llama.cpp through
llama-cpp-python when it is installed (`make bench` installs it, built from source, into .venv;
`make test` never does) — with the same threads and the same token ids:

* prefill: a prompt of --prompt-tokens tokens of the shipped book, tokens/s (best of 3);
* decode: --decode greedy tokens after a short chat prompt, tokens/s (best of 3);
* time to first token of the chat prompt, and the process's RSS once the model is loaded.

Printed: each engine's figures and its ratio to llama.cpp's.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import psutil
from tokenizers import Tokenizer

from tokenweave.cli._demo import shipped_text
from tokenweave.models import (
    DecoderSession,
    Message,
    Precision,
    default_cache_dir,
    prepare_generator,
    render_chat,
)
from tokenweave.models._generator_cache import gguf_path

MODEL = "smollm2-135m-instruct"


@dataclass(frozen=True)
class Figures:
    engine: str
    prefill_tps: float
    decode_tps: float
    first_token_s: float
    rss_mib: float
    text: str


def _best(runs: int, timed: Callable[[], float]) -> float:
    return min(timed() for _ in range(runs))


def _ours(
    precision: Precision, threads: int, long_prompt: Sequence[int], chat: Sequence[int], n: int
) -> Figures:
    generator = prepare_generator(MODEL, default_cache_dir(), (precision,))
    path, _ = generator.decoder(precision)
    decoder = DecoderSession(path, generator.config, threads=threads)
    rss = psutil.Process().memory_info().rss / 2**20

    def prefill() -> float:
        started = time.perf_counter()
        decoder.prefill(long_prompt, decoder.new_cache())
        return time.perf_counter() - started

    def first() -> float:
        started = time.perf_counter()
        next(iter(decoder.generate(chat, 1)))
        return time.perf_counter() - started

    def decode() -> float:
        return decoder.timed(chat, n).decode_s

    tokens = list(decoder.generate(chat, n))
    tokenizer = Tokenizer.from_file(str(generator.tokenizer_path))
    return Figures(
        f"tokenweave {precision.value}",
        len(long_prompt) / _best(3, prefill),
        n / _best(3, decode),
        _best(3, first),
        rss,
        tokenizer.decode(tokens),
    )


def _llama_cpp(threads: int, long_prompt: Sequence[int], chat: Sequence[int], n: int) -> Figures:
    from llama_cpp import Llama  # installed by `make bench` only

    before = psutil.Process().memory_info().rss / 2**20
    llm = Llama(
        model_path=str(gguf_path(prepare_generator(MODEL, default_cache_dir()).spec)[0]),
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=threads,
        n_batch=max(512, len(long_prompt)),
        verbose=False,
    )
    rss = psutil.Process().memory_info().rss / 2**20 - before

    def prefill() -> float:
        llm.reset()
        started = time.perf_counter()
        llm.eval(list(long_prompt))
        return time.perf_counter() - started

    def greedy(count: int) -> tuple[list[int], float, float]:
        """Greedy tokens (top_k 1, no repetition penalty), the time to the first and after it."""
        llm.reset()
        tokens: list[int] = []
        started = time.perf_counter()
        first = started
        stream = llm.generate(list(chat), temp=0.0, top_k=1, repeat_penalty=1.0, reset=True)
        for token in stream:
            if not tokens:
                first = time.perf_counter()
            tokens.append(int(token))
            if len(tokens) > count:
                break
        return tokens[:count], first - started, time.perf_counter() - first

    tokens, _, _ = greedy(n)
    first = _best(3, lambda: greedy(1)[1])
    decode = _best(3, lambda: greedy(n)[2])
    text = llm.detokenize(tokens).decode("utf-8", "replace")
    return Figures("llama.cpp", len(long_prompt) / _best(3, prefill), n / decode, first, rss, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--decode", type=int, default=128)
    parser.add_argument("--precision", choices=("exact", "fast", "both"), default="both")
    args = parser.parse_args()
    generator = prepare_generator(MODEL, default_cache_dir())
    tokenizer = Tokenizer.from_file(str(generator.tokenizer_path))
    book = tokenizer.encode(shipped_text().read_text(encoding="utf-8")[:20_000]).ids
    long_prompt = book[: args.prompt_tokens]
    chat = tokenizer.encode(
        render_chat(generator.chat_template, [Message("user", "What is the capital of France?")])
    ).ids
    precisions = tuple(Precision) if args.precision == "both" else (Precision(args.precision),)
    results = []
    for precision in precisions:
        results.append(_ours(precision, args.threads, long_prompt, chat, args.decode))
        gc.collect()
    if importlib.util.find_spec("llama_cpp") is not None:
        results.append(_llama_cpp(args.threads, long_prompt, chat, args.decode))
    else:
        print("llama-cpp-python is not installed: no baseline (make bench installs it)")
    baseline = next((r for r in results if r.engine == "llama.cpp"), None)
    print(
        f"{args.threads} threads; prefill {len(long_prompt)} tokens; decode {args.decode} greedy "
        "tokens after a chat prompt of "
        f"{len(chat)} tokens"
    )
    columns = ("prefill tok/s", 14), ("decode tok/s", 13), ("TTFT ms", 8), ("RSS MiB", 8)
    print(f"{'engine':18s} " + " ".join(f"{name:>{width}s}" for name, width in columns))
    for r in results:
        ratio = ""
        if baseline is not None and r is not baseline:
            ratio = (
                f"  (prefill {r.prefill_tps / baseline.prefill_tps:.2f}x, "
                f"decode {r.decode_tps / baseline.decode_tps:.2f}x llama.cpp)"
            )
        print(
            f"{r.engine:18s} {r.prefill_tps:14.0f} {r.decode_tps:13.1f} "
            f"{r.first_token_s * 1000:8.0f} {r.rss_mib:8.0f}{ratio}"
        )
    for r in results:
        print(f"{r.engine}: {r.text[:100]!r}")


if __name__ == "__main__":
    main()
