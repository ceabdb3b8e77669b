"""Verification by re-scoring: false accusations over honest generations, cheats caught, and
what a check costs against generating again.

    python benchmarks/bench_verify.py [--prompts 20] [--tokens 64] [--threads 2] [--precision exact]

For each prompt (questions and excerpts of the shipped book, as chats), in greedy and in seeded
sampling mode (temperature 0.8, top_p 0.95): an honest generation is re-scored by a second,
separately loaded decoder (as a verifier node would) — a false accusation is any honest claim
not passed as it is. Then three dishonest claims for the same task are re-scored: another
prompt's text, a generation from only the prompt's last 16 tokens (a shortcut), and the other
precision's output (for EXACT, the FAST decoder's: int8 activations, a cheaper model of the same
weights). `--precision` is the decoder the node and the verifier run. Printed: counts, and the
time of a re-scoring pass against the generation it checks.
"""

from __future__ import annotations

import argparse
import time

from tokenweave.cli._demo import shipped_text
from tokenweave.models import (
    Generation,
    Generator,
    Message,
    Precision,
    Sampling,
    default_cache_dir,
    prepare_generator,
    verify_generation,
)

QUESTIONS = [
    "What is the capital of France?",
    "Name three colours.",
    "Count to five.",
    "Write a haiku about the sea.",
    "Explain what a CPU does in one sentence.",
    "Give me a recipe for pancakes.",
    "What is 12 times 7?",
    "Who wrote Romeo and Juliet?",
    "Describe a cat to someone who has never seen one.",
    "List four planets.",
]


def prompts(count: int) -> list[str]:
    book = shipped_text().read_text(encoding="utf-8")
    out = []
    for i in range(count):
        if i % 2 == 0:
            out.append(QUESTIONS[(i // 2) % len(QUESTIONS)])
        else:
            start = (i * 7919) % (len(book) - 1500)
            out.append(f"Summarise this passage:\n{book[start : start + 1200]}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("exact", "fast"), default="exact")
    args = parser.parse_args()
    precision = Precision(args.precision)
    other = Precision.FAST if precision is Precision.EXACT else Precision.EXACT
    prepared = prepare_generator(
        "smollm2-135m-instruct", default_cache_dir(), (Precision.EXACT, Precision.FAST)
    )
    node = Generator(prepared, precision, threads=args.threads)
    verifier = Generator(prepared, precision, threads=args.threads)
    cheap = Generator(prepared, other, threads=args.threads)
    modes = {"greedy": lambda i: Sampling(), "sampled": lambda i: Sampling(0.8, 0.95, i)}
    honest = accused = 0
    accused_in = dict.fromkeys(modes, 0)
    caught = {"other text": 0, "last 16 tokens": 0, f"{other.value} decoder": 0}
    differs = dict.fromkeys(caught, 0)
    gen_s = check_s = 0.0
    texts = prompts(args.prompts)
    ids = [node.encode(node.chat_prompt([Message("user", t)])) for t in texts]
    for i, prompt in enumerate(ids):
        for mode, make in modes.items():
            sampling = make(i)

            def passes(
                claim: Generation, prompt: list[int] = prompt, s: Sampling = sampling
            ) -> bool:
                verdict = verify_generation(
                    verifier, prompt, list(claim.token_ids), claim.finish_reason, args.tokens, s
                )
                return verdict == claim

            started = time.perf_counter()
            claim = node.generate(prompt, args.tokens, sampling)
            generated = time.perf_counter()
            ok = passes(claim)
            gen_s += generated - started
            check_s += time.perf_counter() - generated
            honest += 1
            accused += not ok
            accused_in[mode] += not ok
            dishonest = {
                "other text": node.generate(ids[(i + 1) % len(ids)], args.tokens, sampling),
                "last 16 tokens": node.generate(prompt[-16:], args.tokens, sampling),
                f"{other.value} decoder": cheap.generate(prompt, args.tokens, sampling),
            }
            for kind, forged in dishonest.items():
                if forged.token_ids != claim.token_ids:
                    differs[kind] += 1
                    caught[kind] += not passes(forged)
        print(f"{i + 1}/{len(ids)} prompts: {accused} false accusations so far", flush=True)
    print(
        f"honest claims: {honest}, false accusations: {accused} ("
        + ", ".join(f"{mode} {n}" for mode, n in accused_in.items())
        + ")"
    )
    for kind in caught:
        print(f"{kind}: {caught[kind]} caught of {differs[kind]} that differ from the honest text")
    print(
        f"re-scoring: {check_s / honest * 1000:.0f} ms a claim against {gen_s / honest * 1000:.0f}"
        f" ms to generate it ({gen_s / check_s:.1f}× cheaper)"
    )


if __name__ == "__main__":
    main()
