import tokenweave.models


def test_public_names_are_pinned() -> None:
    assert sorted(tokenweave.models.__all__) == [
        "ALL_MINILM_L6_V2",
        "EmbeddingSession",
        "Embeddings",
        "ModelCacheError",
        "ModelHashMismatchError",
        "ModelSpec",
        "PreparedModel",
        "SPECIAL_TOKENS_PER_WINDOW",
        "SpecialTokens",
        "TokenIds",
        "Tokens",
        "UnknownModelError",
        "default_cache_dir",
        "default_providers",
        "encode_document",
        "get_model_spec",
        "known_models",
        "load_prepared",
        "load_tokenizer",
        "prepare_model",
        "tokenize",
        "windows_digest",
    ]
    for name in tokenweave.models.__all__:
        assert hasattr(tokenweave.models, name), name


def test_errors_are_value_errors() -> None:
    assert issubclass(tokenweave.models.UnknownModelError, tokenweave.errors.NotFoundError)
    assert issubclass(
        tokenweave.models.ModelHashMismatchError, tokenweave.errors.FailedPreconditionError
    )
    assert issubclass(tokenweave.models.ModelHashMismatchError, tokenweave.models.ModelCacheError)
