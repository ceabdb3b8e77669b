"""The models this coordinator serves: name → spec, file hash and tokenizer.

An embedding model is served by its ONNX file's hash; a generator by its exact decoder's (every
node of a generation job runs that same file, so seeded generation gives the same tokens); a
registered ONNX model by its file's (added while the coordinator runs: `OnnxModels`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from tokenweave.errors import NotFoundError, clip
from tokenweave.models import (
    GeneratorSpec,
    ModelSpec,
    OnnxModelSpec,
    Precision,
    is_generator,
    load_tokenizer,
    prepare_generator,
    prepare_model,
)


@dataclass(frozen=True)
class CatalogEntry:
    spec: ModelSpec | GeneratorSpec | OnnxModelSpec
    sha256: str
    #: A text model's (None for a model of tensors).
    tokenizer: Tokenizer | None
    #: Generators: the chat template chat prompts are rendered with.
    chat_template: str = ""


class ModelCatalog:
    def __init__(self, entries: Sequence[CatalogEntry]) -> None:
        self._entries = {e.spec.name: e for e in entries}

    @classmethod
    def prepare(cls, names: Sequence[str], cache_dir: Path) -> ModelCatalog:
        """Prepare (or verify) each model in the cache; slow the first time."""
        entries = []
        for name in names:
            if is_generator(name):
                generator = prepare_generator(name, cache_dir)
                _, sha256 = generator.decoder(Precision.EXACT)
                tokenizer = Tokenizer.from_file(str(generator.tokenizer_path))
                entries.append(
                    CatalogEntry(generator.spec, sha256, tokenizer, generator.chat_template)
                )
                continue
            prepared = prepare_model(name, cache_dir)
            entries.append(CatalogEntry(prepared.spec, prepared.sha256, load_tokenizer(prepared)))
        return cls(entries)

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def add(self, entry: CatalogEntry) -> None:
        """Serve a model registered while running (a name is never taken over)."""
        if self._entries.setdefault(entry.spec.name, entry) is not entry:
            raise ValueError(f"model {entry.spec.name!r} is already served")

    def get(self, name: str) -> CatalogEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise NotFoundError(
                f"unknown model {clip(name)}; this coordinator serves {', '.join(self.names)}"
            ) from None
