"""The prepared model's tokenizer, with the shipped truncation and padding switched off, and
whole-document tokenization in bounded memory.

The tokenizer's Python objects take about 0.9 KB a token, so encoding an 8 MiB document in one
call held about 2 GB. `tokenize` encodes a long document in chunks of `CHUNK_CHARS` cut at a
space or a newline, where a whitespace-splitting pre-tokenizer (BERT's) cuts anyway: the ids and
offsets are those of one call (tests/models/test_tokenizer.py compares them), and memory holds
one chunk's objects plus 12 bytes a token. A byte-level BPE tokenizer (GPT-2's regex, as
SmolLM2's) is cut only at a space between two letters: there the regex ends one word and starts
" word" in the whole text and in both pieces alike. A tokenizer whose normalizer or
pre-tokenizer could join text across the cut is never chunked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
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


#: Whether text may be cut just before index i (a space or a newline) and encode the same.
CutRule = Callable[[str, int], bool]


def _at_whitespace(text: str, i: int) -> bool:
    return True


def _between_letters(text: str, i: int) -> bool:
    """A space with a letter on each side: GPT-2's regex ends the word before it either way."""
    return text[i] == " " and text[i - 1].isalpha() and text[i + 1 : i + 2].isalpha()


def _byte_level_regex(pre_tokenizer: dict[str, object]) -> bool:
    """ByteLevel with GPT-2's regex and no prefix space, alone or after per-digit splitting."""
    if pre_tokenizer.get("type") == "Sequence":
        steps = pre_tokenizer.get("pretokenizers")
        return (
            isinstance(steps, list)
            and any(step.get("type") == "ByteLevel" for step in steps)
            and all(step.get("type") == "Digits" or _byte_level_regex(step) for step in steps)
        )
    return (
        pre_tokenizer.get("type") == "ByteLevel"
        and pre_tokenizer.get("use_regex") is True
        and pre_tokenizer.get("add_prefix_space") is False
    )


def cut_rule(tokenizer: Tokenizer) -> CutRule | None:
    """Where a document may be cut and encode to the same tokens as whole; None: nowhere."""
    normalizer = tokenizer.normalizer
    if normalizer is not None and type(normalizer).__name__ not in _PER_CHARACTER_NORMALIZERS:
        return None
    added = tokenizer.get_added_tokens_decoder().values()
    if any(" " in token.content or "\n" in token.content for token in added):
        return None
    if type(tokenizer.pre_tokenizer).__name__ in _WHITESPACE_PRE_TOKENIZERS:
        return _at_whitespace
    if tokenizer.pre_tokenizer is None:
        return None
    pre_tokenizer = json.loads(tokenizer.pre_tokenizer.__getstate__())
    return _between_letters if _byte_level_regex(pre_tokenizer) else None


def splits_at_whitespace(tokenizer: Tokenizer) -> bool:
    """Whether text cut at any space or newline encodes to the same tokens as the whole text."""
    return cut_rule(tokenizer) is _at_whitespace


def _last_cut(text: str, start: int, limit: int, rule: CutRule) -> int:
    """The last index in (start, limit) before which `rule` allows a cut; -1 if none."""
    i = limit
    while True:
        i = max(text.rfind(" ", start + 1, i), text.rfind("\n", start + 1, i))
        if i < 0 or rule(text, i):
            return i


def _next_cut(text: str, after: int, rule: CutRule) -> int:
    """The first index from `after` on before which `rule` allows a cut; len(text) if none."""
    i = after
    while True:
        found = [j for j in (text.find(" ", i), text.find("\n", i)) if j >= 0]
        if not found:
            return len(text)
        i = min(found)
        if rule(text, i):
            return i
        i += 1


def _chunks(text: str, size: int, rule: CutRule = _at_whitespace) -> Iterator[tuple[int, str]]:
    """(start, text[start:end]) covering `text`, each about `size` characters and cut just
    before a space or newline that `rule` allows; a stretch with none stays whole."""
    start, length = 0, len(text)
    while length - start > size:
        cut = _last_cut(text, start, start + size, rule)
        if cut < 0:
            cut = _next_cut(text, start + size, rule)
        yield start, text[start:cut]
        start = cut
    if start < length or length == 0:
        yield start, text[start:]


def tokenize(tokenizer: Tokenizer, text: str, *, chunk_chars: int = CHUNK_CHARS) -> Tokens:
    """The tokens of a whole document, encoded a chunk at a time where the tokenizer allows."""
    rule = cut_rule(tokenizer)
    if rule is None:
        rule, chunk_chars = _at_whitespace, max(len(text), 1)
    ids: list[npt.NDArray[np.uint32]] = []
    offsets: list[npt.NDArray[np.uint32]] = []
    for start, chunk in _chunks(text, chunk_chars, rule):
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
