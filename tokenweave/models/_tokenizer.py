"""The prepared model's tokenizer, with the shipped truncation and padding switched off."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from tokenweave.models._cache import PreparedModel

TokenIds = npt.NDArray[np.int64]

#: Every window is framed as [CLS] tokens… [SEP]: two places of the model's input.
SPECIAL_TOKENS_PER_WINDOW = 2


@dataclass(frozen=True)
class SpecialTokens:
    """Ids of the tokens that frame and pad a window."""

    cls_id: int
    sep_id: int
    pad_id: int

    @classmethod
    def from_tokenizer(
        cls,
        tokenizer: Tokenizer,
        *,
        cls_token: str = "[CLS]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
    ) -> SpecialTokens:
        ids: list[int] = []
        for token in (cls_token, sep_token, pad_token):
            token_id = tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"the tokenizer has no special token {token!r}")
            ids.append(token_id)
        return cls(cls_id=ids[0], sep_id=ids[1], pad_id=ids[2])


def load_tokenizer(prepared: PreparedModel) -> Tokenizer:
    """The tokenizer of ``prepared``; it neither truncates (the shipped file cuts at 128 tokens)
    nor pads, so one call tokenizes a whole document."""
    tokenizer = Tokenizer.from_file(str(prepared.tokenizer_path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def encode_document(tokenizer: Tokenizer, text: str) -> TokenIds:
    """Token ids of ``text`` without [CLS]/[SEP], ready to be cut into windows."""
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return np.asarray(encoding.ids, dtype=np.int64)


def windows_digest(windows: Sequence[npt.NDArray[np.integer]]) -> str:
    """sha256 (hex) of the windows' token ids, each as uint32 little-endian, in order: what a
    node shows the coordinator to prove it ran the tokens it was meant to."""
    digest = hashlib.sha256()
    for window in windows:
        digest.update(np.asarray(window).astype("<u4").tobytes())
    return digest.hexdigest()
