"""Fixtures shared by every test package: MiniLM is converted to ONNX once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenweave.models import PreparedModel, prepare_model

MODEL_NAME = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def prepared(model_cache: Path) -> PreparedModel:
    return prepare_model(MODEL_NAME, model_cache)
