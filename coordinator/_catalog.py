"""The models this coordinator serves: name → spec, file hash and tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

from tokenweave.errors import NotFoundError, clip
from tokenweave.models import ModelSpec, load_tokenizer, prepare_model


@dataclass(frozen=True)
class CatalogEntry:
    spec: ModelSpec
    sha256: str
    tokenizer: Tokenizer


class ModelCatalog:
    def __init__(self, entries: Sequence[CatalogEntry]) -> None:
        self._entries = {e.spec.name: e for e in entries}

    @classmethod
    def prepare(cls, names: Sequence[str], cache_dir: Path) -> ModelCatalog:
        """Prepare (or verify) each model in the cache; slow the first time."""
        entries = []
        for name in names:
            prepared = prepare_model(name, cache_dir)
            entries.append(CatalogEntry(prepared.spec, prepared.sha256, load_tokenizer(prepared)))
        return cls(entries)

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> CatalogEntry:
        try:
            return self._entries[name]
        except KeyError:
            raise NotFoundError(
                f"unknown model {clip(name)}; this coordinator serves {', '.join(self.names)}"
            ) from None
