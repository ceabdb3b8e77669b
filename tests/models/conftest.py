"""Fixtures of the model tests (`model_cache` and `prepared` come from tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from tokenweave.models import EmbeddingSession, PreparedModel, load_tokenizer

MODEL_NAME = "all-minilm-l6-v2"
REFERENCE_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="session")
def tokenizer(prepared: PreparedModel) -> Tokenizer:
    return load_tokenizer(prepared)


@pytest.fixture(scope="session")
def session(prepared: PreparedModel) -> EmbeddingSession:
    # CPU on purpose: its results do not depend on batch composition, so tests can be exact-ish.
    return EmbeddingSession(prepared, providers=["CPUExecutionProvider"], batch_size=4)


@pytest.fixture(scope="session")
def reference() -> dict[str, Any]:
    """Embeddings and token ids computed by sentence-transformers itself
    (scripts/make_reference_embeddings.py)."""
    document: dict[str, Any] = json.loads(REFERENCE_PATH.read_text(encoding="utf-8"))
    return document
