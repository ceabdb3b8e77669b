from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from tokenweave.cli._demo import shipped_text
from tokenweave.models import PreparedGenerator, SpecialTokens, encode_document, tokenize
from tokenweave.models._tokenizer import cut_rule, splits_at_whitespace


def test_special_tokens_come_from_the_tokenizer(
    tokenizer: Tokenizer, reference: dict[str, Any]
) -> None:
    special = SpecialTokens.from_tokenizer(tokenizer)
    first_case = reference["cases"][0]["input_ids"]
    assert special.cls_id == first_case[0] == tokenizer.token_to_id("[CLS]")
    assert special.sep_id == first_case[-1] == tokenizer.token_to_id("[SEP]")
    assert special.pad_id == tokenizer.token_to_id("[PAD]")


def test_ids_match_sentence_transformers(tokenizer: Tokenizer, reference: dict[str, Any]) -> None:
    special = SpecialTokens.from_tokenizer(tokenizer)
    for case in reference["cases"]:
        ids = encode_document(tokenizer, case["text"])
        assert ids.dtype == np.int64
        assert [special.cls_id, *ids.tolist(), special.sep_id] == case["input_ids"], case["text"]


def test_reference_includes_a_text_past_the_shipped_128_token_truncation(
    reference: dict[str, Any],
) -> None:
    assert any(128 < len(case["input_ids"]) <= 256 for case in reference["cases"])


def test_documents_are_neither_truncated_nor_padded(tokenizer: Tokenizer) -> None:
    ids = encode_document(tokenizer, "token " * 1000)
    assert len(ids) == 1000
    assert len(encode_document(tokenizer, "short")) == 1
    assert encode_document(tokenizer, "").shape == (0,)


def _whole(tokenizer: Tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    encoding = tokenizer.encode(text, add_special_tokens=False)
    return encoding.ids, [tuple(o) for o in encoding.offsets]


# Spaces, newlines and the characters BERT's normalizer treats specially: other whitespace,
# control characters (dropped), combining accents, CJK (split one by one), punctuation, an
# uppercase sigma (lowercased by context in some libraries) and the special tokens' text.
_ALPHABET = st.sampled_from(
    [*"ab Z \n\t\r.,!", "\x00", "\x1c", "\u00a0", "\u2003", "\u0301", "é", "你", "Σ", "[CLS]"]
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_ALPHABET, max_size=60), chunk=st.integers(1, 12))
def test_chunked_tokenization_equals_one_call(
    tokenizer: Tokenizer, parts: list[str], chunk: int
) -> None:
    text = "".join(parts)
    tokens = tokenize(tokenizer, text, chunk_chars=chunk)
    ids, offsets = _whole(tokenizer, text)
    assert tokens.ids.tolist() == ids
    assert [tuple(o) for o in tokens.offsets.tolist()] == offsets


def test_a_book_tokenizes_the_same_in_chunks(tokenizer: Tokenizer) -> None:
    text = shipped_text().read_text(encoding="utf-8")[:200_000]
    tokens = tokenize(tokenizer, text, chunk_chars=997)
    ids, offsets = _whole(tokenizer, text)
    assert tokens.ids.tolist() == ids
    assert [tuple(o) for o in tokens.offsets.tolist()] == offsets
    assert tokens.ids.dtype == tokens.offsets.dtype == np.uint32


def test_a_tokenizer_that_may_join_across_spaces_is_not_chunked() -> None:
    byte_level = Tokenizer(models.BPE())
    byte_level.pre_tokenizer = pre_tokenizers.ByteLevel()
    assert not splits_at_whitespace(byte_level)
    bert = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    bert.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    assert splits_at_whitespace(bert)
    bert.normalizer = normalizers.Replace(" ", "")
    assert not splits_at_whitespace(bert)


@pytest.fixture(scope="module")
def byte_level(generator: PreparedGenerator) -> Tokenizer:
    """SmolLM2's byte-level BPE (GPT-2's regex after per-digit splitting)."""
    return Tokenizer.from_file(str(generator.tokenizer_path))


# Letters on both sides of spaces (the only cuts), and what GPT-2's regex treats apart:
# contractions, digits, runs of spaces and newlines, punctuation, accents, CJK, control tokens.
_BYTE_LEVEL_ALPHABET = st.sampled_from(
    [*"ab Z  \n\t.,!'", "'s", "'ll", "7", "42", "é", "e\u0301", "你", "Σ", "\u00a0", "<|im_start|>"]
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_BYTE_LEVEL_ALPHABET, max_size=60), chunk=st.integers(1, 12))
def test_byte_level_chunks_equal_one_call(
    byte_level: Tokenizer, parts: list[str], chunk: int
) -> None:
    assert cut_rule(byte_level) is not None
    text = "".join(parts)
    tokens = tokenize(byte_level, text, chunk_chars=chunk)
    ids, offsets = _whole(byte_level, text)
    assert tokens.ids.tolist() == ids
    assert [tuple(o) for o in tokens.offsets.tolist()] == offsets


def test_the_book_tokenizes_the_same_in_byte_level_chunks(byte_level: Tokenizer) -> None:
    text = shipped_text().read_text(encoding="utf-8")
    tokens = tokenize(byte_level, text, chunk_chars=997)
    ids, offsets = _whole(byte_level, text)
    assert tokens.ids.tolist() == ids
    assert [tuple(o) for o in tokens.offsets.tolist()] == offsets
