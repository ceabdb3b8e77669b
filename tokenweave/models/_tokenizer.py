"""The prepared model's tokenizer, with the shipped truncation and padding switched off, and
whole-document tokenization in bounded memory.

The tokenizer's Python objects take about 0.9 KB a token, so encoding an 8 MiB document in one
call held about 2 GB. `tokenize` encodes a long document in chunks of `CHUNK_CHARS` cut at a
space or a newline, where a whitespace-splitting pre-tokenizer (BERT's) cuts anyway: the ids and
offsets are those of one call (tests/models/test_tokenizer.py compares them), and memory holds
one chunk's objects plus 12 bytes a token. A tokenizer whose normalizer or pre-tokenizer could
join text across whitespace is never chunked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from tokenweave.models._cache import PreparedModel

TokenIds = npt.NDArray[np.int64]

#: Characters encoded per tokenizer call in a long document (about 16k tokens of English).
CHUNK_CHARS = 64 * 1024
#: Normalizers that map each character on its own (whitespace stays whitespace), and
#: pre-tokenizers that split at every space and newline: text cut there encodes the same.
_PER_CHARACTER_NORMALIZERS = frozenset(
    {"BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents"}
)
_WHITESPACE_PRE_TOKENIZERS = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})

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


@dataclass(frozen=True, slots=True)
class Tokens:
    """A document's token ids (no [CLS]/[SEP]) and each token's [start, end) in characters."""

    ids: npt.NDArray[np.uint32]
    offsets: npt.NDArray[np.uint32]  # [tokens, 2]


def splits_at_whitespace(tokenizer: Tokenizer) -> bool:
    """Whether text cut at a space or a newline encodes to the same tokens as the whole text."""
    normalizer = tokenizer.normalizer
    if normalizer is not None and type(normalizer).__name__ not in _PER_CHARACTER_NORMALIZERS:
        return False
    if type(tokenizer.pre_tokenizer).__name__ not in _WHITESPACE_PRE_TOKENIZERS:
        return False
    added = tokenizer.get_added_tokens_decoder().values()
    return not any(" " in token.content or "\n" in token.content for token in added)


def _chunks(text: str, size: int) -> Iterator[tuple[int, str]]:
    """(start, text[start:end]) covering `text`, each about `size` characters and cut just
    before a space or newline; a stretch with neither stays whole."""
    start, length = 0, len(text)
    while length - start > size:
        limit = start + size
        cut = max(text.rfind(" ", start + 1, limit), text.rfind("\n", start + 1, limit))
        if cut < 0:
            later = [i for i in (text.find(" ", limit), text.find("\n", limit)) if i >= 0]
            cut = min(later, default=length)
        yield start, text[start:cut]
        start = cut
    if start < length or length == 0:
        yield start, text[start:]


def tokenize(tokenizer: Tokenizer, text: str, *, chunk_chars: int = CHUNK_CHARS) -> Tokens:
    """The tokens of a whole document, encoded a chunk at a time where the tokenizer allows."""
    if not splits_at_whitespace(tokenizer):
        chunk_chars = max(len(text), 1)
    ids: list[npt.NDArray[np.uint32]] = []
    offsets: list[npt.NDArray[np.uint32]] = []
    for start, chunk in _chunks(text, chunk_chars):
        encoding = tokenizer.encode(chunk, add_special_tokens=False)
        ids.append(np.asarray(encoding.ids, dtype=np.uint32))
        offsets.append(np.asarray(encoding.offsets, dtype=np.uint32).reshape(-1, 2) + start)
        del encoding
    return Tokens(np.concatenate(ids), np.concatenate(offsets))


def encode_document(tokenizer: Tokenizer, text: str) -> TokenIds:
    """Token ids of ``text`` without [CLS]/[SEP], ready to be cut into windows."""
    return tokenize(tokenizer, text).ids.astype(np.int64)


def windows_digest(windows: Sequence[npt.NDArray[np.integer]]) -> str:
    """sha256 (hex) of the windows' token ids, each as uint32 little-endian, in order: what a
    node shows the coordinator to prove it ran the tokens it was meant to."""
    digest = hashlib.sha256()
    for window in windows:
        digest.update(np.asarray(window).astype("<u4").tobytes())
    return digest.hexdigest()
