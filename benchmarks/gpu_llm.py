"""SmolLM2 on one GPU, for bench_gpu.py --llm: the fp16 decoder with its cache on the device,
against the CPU's exact decoder (greedy replies compared, differing ones re-scored as a verifier
does) and PyTorch fp16 from the same GGUF on the same GPU."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from tokenweave.models import default_cache_dir
from tokenweave.models._session import CPU_PROVIDER

LLM_PROMPTS = (
    "Count to ten.",
    "What is the capital of France? Answer in one sentence.",
    "Write a haiku about a river in spring.",
)


def llm_prompts(generator: Any) -> list[tuple[str, list[int]]]:
    """The chat prompts above, then the raw prompts of the committed transformers reference."""
    from tokenweave.models import Message

    prompts = [
        (text, generator.encode(generator.chat_prompt([Message("user", text)])))
        for text in LLM_PROMPTS
    ]
    fixture = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "smollm2_reference.json"
    for case in json.loads(fixture.read_text("utf-8"))["cases"]:
        prompts.append((case["prompt"][-40:], list(case["input_ids"])))
    return prompts


def llm_section(providers: list[Any], new_tokens: int = 48) -> dict[str, Any]:
    """SmolLM2 on the GPU, as a node would run it: the fp16 decoder with the key-value cache on
    the device, and (for comparison) the CPU's exact graph on the GPU; against the exact
    decoder on this machine's CPU (the verifier's reference) and PyTorch fp16 on the same GPU.
    Greedy replies are compared token by token, and every fp16 reply that differs is re-scored
    the way a verifier does (is it accepted?); then time to first token and decode speed."""
    from tokenweave.models import Generator, Precision, prepare_generator, verify_generation
    from tokenweave.models._decoder import GREEDY

    prepared = prepare_generator(
        "smollm2-135m-instruct", default_cache_dir(), (Precision.EXACT, Precision.HALF)
    )
    reference = Generator(prepared, Precision.EXACT, providers=[CPU_PROVIDER])
    engines = {
        "gpu fp16 (cache on device)": Generator(prepared, Precision.HALF, providers=providers),
        "gpu exact graph": Generator(prepared, Precision.EXACT, providers=providers),
    }
    section: dict[str, Any] = {"agreement": {}, "timing": {}}
    prompts = llm_prompts(reference)
    print(f"\nSmolLM2-135M: greedy replies ({new_tokens} tokens) against the CPU's exact decoder:")
    for name, generator in engines.items():
        same = accepted = 0
        for _, ids in prompts:
            expected = reference.generate(ids, new_tokens).token_ids
            claim = generator.generate(ids, new_tokens)
            if claim.token_ids == expected:
                same += 1
                continue
            verdict = verify_generation(
                reference, ids, claim.token_ids, claim.finish_reason, new_tokens, GREEDY
            )
            accepted += verdict.token_ids == claim.token_ids
        section["agreement"][name] = {
            "prompts": len(prompts),
            "identical": same,
            "different_but_accepted": accepted,
        }
        print(
            f"  {name:28s} identical {same}/{len(prompts)}; of the others, the verifier "
            f"accepts {accepted}/{len(prompts) - same}"
        )
    ids = prompts[0][1]
    timings = {"cpu exact (reference)": reference, **engines}
    for name, generator in timings.items():
        generator.decoder.timed(ids, 4)  # warm-up
        best = min((generator.decoder.timed(ids, 64) for _ in range(3)), key=lambda t: t.decode_s)
        section["timing"][name] = {
            "prompt_tokens": best.prefill_tokens,
            "ttft_ms": round(best.prefill_s * 1000, 2),
            "decode_tokens_per_s": round(best.decode_tokens / best.decode_s, 1),
        }
    try:
        section["timing"]["pytorch fp16 (baseline)"] = torch_llm_timing(ids)
    except Exception as exc:
        print(f"  PyTorch baseline left out: {type(exc).__name__}: {exc}")
    print(f"  time to first token ({len(ids)} prompt tokens) and decode of 64 tokens:")
    for name, figures in section["timing"].items():
        print(
            f"  {name:28s} {figures['ttft_ms']:8.2f} ms  "
            f"{figures['decode_tokens_per_s']:8.1f} tokens/s"
        )
    return section


def torch_llm_timing(ids: list[int], tokens: int = 64) -> dict[str, Any]:
    """transformers' Llama from the same GGUF, fp16 on the GPU, greedy with its KV cache."""
    import torch
    from transformers import AutoModelForCausalLM

    from tokenweave.models import get_generator_spec
    from tokenweave.models._generator_cache import gguf_path

    path, _ = gguf_path(get_generator_spec("smollm2-135m-instruct"))
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float16
    )
    model = model.to("cuda").eval()

    def run() -> tuple[float, float]:
        with torch.inference_mode():
            torch.cuda.synchronize()
            started = time.perf_counter()
            out = model(torch.tensor([ids], device="cuda"), use_cache=True)
            token = out.logits[0, -1].argmax()
            int(token)
            first = time.perf_counter()
            past = out.past_key_values
            for _ in range(tokens):
                out = model(token.view(1, 1), past_key_values=past, use_cache=True)
                past = out.past_key_values
                token = out.logits[0, -1].argmax()
                int(token)  # a node needs each token on the host (to stream it, to stop)
            done = time.perf_counter()
        return first - started, done - first

    run()
    ttft, decode = min((run() for _ in range(3)), key=lambda t: t[1])
    return {
        "prompt_tokens": len(ids),
        "ttft_ms": round(ttft * 1000, 2),
        "decode_tokens_per_s": round(tokens / decode, 1),
    }
