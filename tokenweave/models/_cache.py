"""The on-disk model cache: convert a registered model to ONNX once, verify it on every load.

<cache_dir>/<name>/model.onnx       the graph built by _onnx_bert (addressed by its sha256)
<cache_dir>/<name>/tokenizer.json   copied from the source package
<cache_dir>/<name>/manifest.json    ModelManifest, written last: its presence marks completion
<cache_dir>/<name>/model-fp16.onnx  the fused fp16 graph for GPUs, built when asked for
                                    (`prepare_model(..., fp16=True)`, a node on CUDA); the
                                    manifest is rewritten with its hash
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import onnx
from safetensors.numpy import load_file

from tokenweave.models._errors import ModelCacheError, ModelHashMismatchError
from tokenweave.models._file_integrity import sha256_file, verify_sha256, write_atomically
from tokenweave.models._manifest import ModelManifest
from tokenweave.models._onnx_bert import build_bert_embedder, build_fused_bert_embedder
from tokenweave.models._onnx_graph import OPSET, serialize_model
from tokenweave.models._registry import ModelSpec, get_model_spec
from tokenweave.models._source import BertConfig, SourceFiles, locate_source

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
FP16_FILE = "model-fp16.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class PreparedModel:
    """A model converted to ONNX in the cache and verified against its manifest."""

    name: str
    spec: ModelSpec
    onnx_path: Path
    tokenizer_path: Path
    sha256: str
    #: The fused fp16 graph (same weights, same inputs and output) and its hash, if built.
    fp16_path: Path | None = None
    fp16_sha256: str | None = None


def default_cache_dir() -> Path:
    """``$TOKENWEAVE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/tokenweave/models``, else
    ``~/.cache/tokenweave/models``."""
    explicit = os.environ.get("TOKENWEAVE_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tokenweave" / "models"


def prepare_model(name: str, cache_dir: Path, *, fp16: bool = False) -> PreparedModel:
    """Convert model ``name`` into ``cache_dir/<name>/`` unless it is there already; with
    ``fp16``, also its fused fp16 graph for GPUs.

    A complete directory (one with a manifest) is only verified, never rebuilt; a mismatching
    hash raises ModelHashMismatchError rather than silently replacing the files.
    """
    spec = get_model_spec(name)
    folder = cache_dir / spec.name
    if (folder / MANIFEST_FILE).is_file():
        prepared = load_prepared(name, cache_dir)
        if fp16 and prepared.fp16_path is None:
            _add_fp16(spec, folder)
            return load_prepared(name, cache_dir)
        return prepared

    source = locate_source(spec)
    started = time.perf_counter()
    model_bytes = _build_onnx(spec, source)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / MODEL_FILE, model_bytes)
    write_atomically(folder / TOKENIZER_FILE, source.tokenizer.read_bytes())
    manifest = ModelManifest(
        name=spec.name,
        sha256=sha256_file(folder / MODEL_FILE),
        tokenizer_sha256=sha256_file(folder / TOKENIZER_FILE),
        dim=spec.dim,
        max_tokens=spec.max_tokens,
        onnx_version=onnx.__version__,
        opset=OPSET,
        source=f"{spec.source_package}=={source.package_version}",
    )
    write_atomically(folder / MANIFEST_FILE, manifest.to_json().encode("utf-8"))
    logger.info(
        "prepared %s in %s (sha256 %s, %.1f s)",
        spec.name,
        folder,
        manifest.sha256,
        time.perf_counter() - started,
    )
    if fp16:
        _add_fp16(spec, folder)
        return load_prepared(name, cache_dir)
    return _prepared(spec, folder, manifest.sha256)


def _add_fp16(spec: ModelSpec, folder: Path) -> None:
    """Build the fused fp16 graph beside model.onnx and record its hash in the manifest."""
    started = time.perf_counter()
    source = locate_source(spec)
    config = _checked_config(spec, source)
    weights = load_file(str(source.weights))
    write_atomically(
        folder / FP16_FILE, serialize_model(build_fused_bert_embedder(config, weights))
    )
    manifest = ModelManifest.read(folder / MANIFEST_FILE)
    manifest = dataclasses.replace(manifest, fp16_sha256=sha256_file(folder / FP16_FILE))
    write_atomically(folder / MANIFEST_FILE, manifest.to_json().encode("utf-8"))
    logger.info(
        "prepared %s's fused fp16 graph (sha256 %s, %.1f s)",
        spec.name,
        manifest.fp16_sha256,
        time.perf_counter() - started,
    )


def load_prepared(name: str, cache_dir: Path, expected_sha256: str | None = None) -> PreparedModel:
    """The prepared model ``name`` in ``cache_dir``, after re-hashing its files.

    Raises ModelHashMismatchError when model.onnx (or tokenizer.json) does not hash to what the
    manifest says, or model.onnx does not hash to ``expected_sha256``; ModelCacheError when the
    model was never prepared there or its manifest disagrees with the registry.
    """
    spec = get_model_spec(name)
    folder = cache_dir / spec.name
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelCacheError(f"model {name!r} is not prepared in {folder}: no {MANIFEST_FILE}")
    manifest = ModelManifest.read(manifest_path)
    if (manifest.name, manifest.dim, manifest.max_tokens) != (
        spec.name,
        spec.dim,
        spec.max_tokens,
    ):
        raise ModelCacheError(
            f"{manifest_path} describes {manifest.name!r} (dim {manifest.dim}, max_tokens "
            f"{manifest.max_tokens}), not the registered {spec.name!r} (dim {spec.dim}, "
            f"max_tokens {spec.max_tokens})"
        )
    verify_sha256(folder / TOKENIZER_FILE, manifest.tokenizer_sha256)
    actual = verify_sha256(folder / MODEL_FILE, manifest.sha256)
    if expected_sha256 is not None and expected_sha256.lower() != actual:
        raise ModelHashMismatchError(folder / MODEL_FILE, expected_sha256.lower(), actual)
    if manifest.fp16_sha256:
        verify_sha256(folder / FP16_FILE, manifest.fp16_sha256)
    return _prepared(spec, folder, actual, manifest.fp16_sha256 or None)


def _checked_config(spec: ModelSpec, source: SourceFiles) -> BertConfig:
    config = BertConfig.from_file(source.config)
    if (config.hidden_size, config.max_positions) != (spec.dim, spec.max_tokens):
        raise ModelCacheError(
            f"{source.config}: hidden_size {config.hidden_size} and max_position_embeddings "
            f"{config.max_positions} disagree with the registry ({spec.dim}, {spec.max_tokens})"
        )
    return config


def _build_onnx(spec: ModelSpec, source: SourceFiles) -> bytes:
    config = _checked_config(spec, source)
    return serialize_model(build_bert_embedder(config, load_file(str(source.weights))))


def _prepared(
    spec: ModelSpec, folder: Path, sha256: str, fp16_sha256: str | None = None
) -> PreparedModel:
    return PreparedModel(
        name=spec.name,
        spec=spec,
        onnx_path=folder / MODEL_FILE,
        tokenizer_path=folder / TOKENIZER_FILE,
        sha256=sha256,
        fp16_path=folder / FP16_FILE if fp16_sha256 else None,
        fp16_sha256=fp16_sha256,
    )
