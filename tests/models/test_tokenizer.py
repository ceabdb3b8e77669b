from typing import Any

import numpy as np
from tokenizers import Tokenizer

from tokenweave.models import SpecialTokens, encode_document


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
