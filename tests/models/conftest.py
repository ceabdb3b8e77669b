"""Shared fixtures: MiniLM is converted to ONNX once per test session (a few seconds)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from tokenweave.models import EmbeddingSession, PreparedModel, load_tokenizer, prepare_model

MODEL_NAME = "all-minilm-l6-v2"
REFERENCE_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "minilm_reference.json"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def prepared(model_cache: Path) -> PreparedModel:
    return prepare_model(MODEL_NAME, model_cache)


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
