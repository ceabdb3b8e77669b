"""manifest.json: what a prepared model directory holds and the hashes that vouch for it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from tokenweave.models._errors import ModelCacheError

MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class ModelManifest:
    """The contents of ``<cache_dir>/<name>/manifest.json``."""

    name: str
    sha256: str
    tokenizer_sha256: str
    dim: int
    max_tokens: int
    onnx_version: str
    opset: int
    source: str
    format: int = MANIFEST_FORMAT
    #: The fused fp16 graph GPU nodes run (model-fp16.onnx), once built; "" until then.
    fp16_sha256: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> ModelManifest:
        """Parse ``path``; raises ModelCacheError if it is not a manifest this code can read."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelCacheError(f"cannot read model manifest {path}: {exc}") from exc
        names = {field.name for field in fields(cls)}
        required = names - set(_OPTIONAL)
        if not isinstance(raw, dict) or not required <= raw.keys():
            raise ModelCacheError(
                f"model manifest {path} lacks fields: expected {sorted(required)}"
            )
        if raw["format"] != MANIFEST_FORMAT:
            raise ModelCacheError(
                f"model manifest {path} has format {raw['format']!r}, expected {MANIFEST_FORMAT}"
            )
        return cls(
            **{name: raw[name] for name in required},
            **{name: raw.get(name, default) for name, default in _OPTIONAL.items()},
        )


#: Fields a manifest written before them lacks, and what that means.
_OPTIONAL: dict[str, str] = {"fp16_sha256": ""}
