import tokenweave.models


def test_public_names_are_pinned() -> None:
    assert sorted(tokenweave.models.__all__) == [
        "ALL_MINILM_L6_V2",
        "BatchStats",
        "CUDA_PROVIDER",
        "DATATYPES",
        "DEFAULT_MAX_ERROR",
        "DecoderSession",
        "DynamicBatcher",
        "EmbeddingSession",
        "Embeddings",
        "Generation",
        "Generator",
        "GeneratorSpec",
        "KvCache",
        "LlamaConfig",
        "Message",
        "ModelCacheError",
        "ModelHashMismatchError",
        "ModelSpec",
        "OnnxManifest",
        "OnnxModelSpec",
        "OnnxSession",
        "Precision",
        "PreparedGenerator",
        "PreparedModel",
        "Provider",
        "SMOLLM2_135M_INSTRUCT",
        "SPECIAL_TOKENS_PER_WINDOW",
        "Sampling",
        "SpecialTokens",
        "TensorSpec",
        "TokenIds",
        "Tokens",
        "UnknownModelError",
        "default_cache_dir",
        "default_providers",
        "encode_document",
        "get_generator_spec",
        "get_model_spec",
        "inspect_onnx",
        "is_generator",
        "known_models",
        "load_generator",
        "load_prepared",
        "load_tokenizer",
        "prepare_generator",
        "prepare_model",
        "provider_name",
        "render_chat",
        "sha256_of",
        "store_model",
        "stored_model_path",
        "text_direction_model",
        "tokenize",
        "verify_generation",
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
