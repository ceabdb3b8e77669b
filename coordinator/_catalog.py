"""The models this coordinator serves: name → spec, file hash and tokenizer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from tokenweave.errors import NotFoundError, clip
from tokenweave.models import ModelSpec, load_tokenizer, prepare_model


@dataclass(frozen=True, slots=True)
class TokenizedText:
    ids: npt.NDArray[np.uint32]
    #: [tokens, 2]: each token's [start, end) in the text, in characters.
    offsets: npt.NDArray[np.uint32]


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

    def tokenize(self, name: str, texts: Sequence[str]) -> list[TokenizedText]:
        """Token ids and character offsets of each text, special tokens excluded, untruncated."""
        tokenizer = self.get(name).tokenizer
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [
            TokenizedText(
                ids=np.asarray(e.ids, dtype=np.uint32),
                offsets=np.asarray(e.offsets, dtype=np.uint32).reshape(-1, 2),
            )
            for e in encodings
        ]
