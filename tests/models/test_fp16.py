"""The fused fp16 graph GPU nodes run: built on request, hashed, and as accurate as verification
demands (every window within cosine 0.9999 of the fp32 reference). ONNX Runtime's CPU provider
runs its fp16 operators too, so its numbers are checked here, without a GPU."""

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer

from tokenweave.cli._app import main
from tokenweave.models import (
    EmbeddingSession,
    ModelHashMismatchError,
    PreparedModel,
    encode_document,
    load_prepared,
    prepare_model,
)
from tokenweave.models._cache import FP16_FILE, MANIFEST_FILE

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def fp16_cache(prepared: PreparedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the prepared model's folder with its fp16 graph added."""
    cache = tmp_path_factory.mktemp("fp16-cache")
    shutil.copytree(prepared.onnx_path.parent, cache / prepared.name)
    prepare_model(prepared.name, cache, fp16=True)
    return cache


@pytest.fixture(scope="module")
def with_fp16(prepared: PreparedModel, fp16_cache: Path) -> PreparedModel:
    return load_prepared(prepared.name, fp16_cache)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_fp16_graph_is_added_and_hashed(prepared: PreparedModel, with_fp16: PreparedModel) -> None:
    assert prepared.fp16_path is None  # the shared cache: built only when asked for
    assert with_fp16.fp16_path == with_fp16.onnx_path.parent / FP16_FILE
    assert with_fp16.sha256 == prepared.sha256  # the model's identity is its fp32 graph
    manifest = json.loads((with_fp16.onnx_path.parent / MANIFEST_FILE).read_text())
    assert manifest["fp16_sha256"] == with_fp16.fp16_sha256
    # Half the weights' bytes: the fp16 graph really holds fp16 weights.
    assert with_fp16.fp16_path.stat().st_size < 0.6 * with_fp16.onnx_path.stat().st_size


def test_fp16_embeddings_pass_verification_against_fp32(
    with_fp16: PreparedModel, session: EmbeddingSession, tokenizer: Tokenizer
) -> None:
    rng = np.random.default_rng(3)
    text = " ".join(f"sentence {i} about rivers, trains and the {i}th harvest." for i in range(400))
    ids = encode_document(tokenizer, text)
    windows = [
        ids[s : s + int(n)]
        for s, n in zip(range(0, 1200, 40), rng.integers(1, 254, 30), strict=True)
    ]
    fp16 = EmbeddingSession(with_fp16, providers=CPU, fp16=True, batch_size=8)
    assert fp16.precision == "fp16"
    cosines = _cosines(session.embed_windows(windows), fp16.embed_windows(windows))
    assert cosines.min() >= 0.9999, cosines.min()


def test_fp16_embeddings_match_sentence_transformers(
    with_fp16: PreparedModel, tokenizer: Tokenizer, reference: dict[str, Any]
) -> None:
    cases = reference["cases"]
    fp16 = EmbeddingSession(with_fp16, providers=CPU, fp16=True)
    ours = fp16.embed_windows([encode_document(tokenizer, case["text"]) for case in cases])
    theirs = np.array([case["embedding"] for case in cases])
    assert _cosines(ours, theirs).min() >= 0.9999


def test_the_provider_chooses_the_graph(with_fp16: PreparedModel) -> None:
    assert EmbeddingSession(with_fp16, providers=CPU).precision == "fp32"
    # Asked for CUDA first (this onnxruntime has none: it runs on the CPU, but the choice of
    # graph follows what was asked for, as on a GPU node).
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        cuda_first = EmbeddingSession(with_fp16, providers=["CUDAExecutionProvider", *CPU])
    assert cuda_first.precision == "fp16"


def test_fp16_asked_for_but_not_built(prepared: PreparedModel) -> None:
    with pytest.raises(ValueError, match="models prepare --fp16"):
        EmbeddingSession(prepared, providers=CPU, fp16=True)


def test_a_swapped_fp16_file_is_refused(with_fp16: PreparedModel, tmp_path: Path) -> None:
    folder = tmp_path / with_fp16.name
    shutil.copytree(with_fp16.onnx_path.parent, folder)
    (folder / FP16_FILE).write_bytes((folder / FP16_FILE).read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelHashMismatchError):
        load_prepared(with_fp16.name, tmp_path)


def test_a_manifest_from_before_fp16_still_loads(prepared: PreparedModel, tmp_path: Path) -> None:
    folder = tmp_path / prepared.name
    shutil.copytree(prepared.onnx_path.parent, folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest.pop("fp16_sha256", None)
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    loaded = load_prepared(prepared.name, tmp_path)
    assert loaded.sha256 == prepared.sha256
    assert loaded.fp16_path is None


def test_models_prepare_fp16_on_the_command_line(
    prepared: PreparedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(prepared.onnx_path.parent, tmp_path / prepared.name)
    cache = ["--model-cache", str(tmp_path)]
    assert main(["models", "prepare", prepared.name, "--fp16", *cache]) == 0
    assert f"{prepared.name} (fp16) sha256:" in capsys.readouterr().out
    assert main(["models", "cache", "--json", *cache]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    fp16 = load_prepared(prepared.name, tmp_path).fp16_sha256
    assert rows[f"{prepared.name} (fp16)"]["sha256"] == fp16
