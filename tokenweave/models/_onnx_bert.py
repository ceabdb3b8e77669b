"""Build a sentence-embedding ONNX graph from BERT weights, without torch.

The graph is the BERT encoder followed by sentence-transformers' pooling: the mean of the last
hidden states over the attention mask, then L2 normalisation, so one session call turns token
ids into unit vectors.

    input_ids       int64   [batch, seq]
    attention_mask  int64   [batch, seq]   1 for real tokens, 0 for padding
    embeddings      float32 [batch, hidden]

Two forms, with the same inputs and output:

- ``build_bert_embedder``: standard ONNX operators in fp32, op for op what BertModel computes.
  The reference every node can run, and the graph verification compares against.
- ``build_fused_bert_embedder``: for GPUs. Each layer is four of ONNX Runtime's fused
  operators (Attention with the q/k/v projections packed in one matrix; SkipLayerNormalization
  taking the bias, the residual and the norm in one kernel; BiasGelu), in fp16 or fp32. The
  pooling and normalisation run in fp32 whatever the encoder's type: a mean over 256 positions
  and a sum of 384 squares lose digits in fp16. The layer norms and the attention softmax
  accumulate in fp32 inside their kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt
import onnx

from tokenweave.models._errors import ModelCacheError
from tokenweave.models._onnx_graph import (
    CONTRIB_DOMAIN,
    FLOAT,
    INT32,
    INT64,
    GraphBuilder,
    tensor_info,
)
from tokenweave.models._source import BertConfig

Weights = Mapping[str, npt.NDArray[np.float32]]

# Added to the attention scores of padded keys: finite, so a row that is all padding gives
# a uniform softmax rather than NaN, and large enough that exp() of it is exactly 0.
_MASKED_SCORE = float(np.finfo(np.float32).min)


def build_bert_embedder(config: BertConfig, weights: Weights) -> onnx.ModelProto:
    """The checked ONNX model for ``config`` with ``weights`` (HF BertModel names)."""
    _check_weights(config, weights)
    g = GraphBuilder()
    mask = g.op("Cast", ["attention_mask"], "mask_float", to=FLOAT)
    hidden = _embeddings(g, config, weights)
    bias = _attention_bias(g, mask)
    for layer in range(config.num_layers):
        hidden = _encoder_layer(g, config, weights, layer, hidden, bias)
    _pool_and_normalise(g, hidden, mask)
    return _built(g, "bert_sentence_embedder", config)


def build_fused_bert_embedder(
    config: BertConfig, weights: Weights, dtype: type[np.floating] = np.float16
) -> onnx.ModelProto:
    """The same embedder from ONNX Runtime's fused operators, its encoder in ``dtype``
    (np.float16 for GPUs; np.float32 runs on any provider)."""
    if dtype not in (np.float16, np.float32):
        raise ValueError(f"dtype must be float16 or float32, got {dtype}")
    _check_weights(config, weights)
    g = GraphBuilder()

    def cast(key: str, array: npt.NDArray[np.float32]) -> str:
        return g.weight(key, array.astype(dtype))

    mask = g.op("Cast", ["attention_mask"], "mask_float", to=FLOAT)
    # Windows are right-padded: each row's length is the Attention's mask (its fastest form).
    lengths = g.op("ReduceSum", ["attention_mask", g.ints([1])], "lengths_i64", keepdims=0)
    lengths = g.op("Cast", [lengths], "lengths", to=INT32)

    hidden = _embeddings(g, config, weights, dtype)
    eps = config.layer_norm_eps
    for layer in range(config.num_layers):
        p = f"encoder.layer.{layer}."
        n = f"layer{layer}."
        projections = [p + f"attention.self.{part}" for part in ("query", "key", "value")]
        qkv_weight = np.concatenate([weights[key + ".weight"].T for key in projections], axis=1)
        qkv_bias = np.concatenate([weights[key + ".bias"] for key in projections])
        attended = g.op(
            "Attention",
            [hidden, cast(n + "qkv.weight", qkv_weight), cast(n + "qkv.bias", qkv_bias), lengths],
            n + "attention",
            domain=CONTRIB_DOMAIN,
            num_heads=config.num_heads,
        )
        out = p + "attention.output."
        projected = g.op(
            "MatMul",
            [attended, cast(out + "dense.weight", weights[out + "dense.weight"].T)],
            n + "attn_out",
        )
        hidden = _skip_layer_norm(g, projected, hidden, weights, out, cast, eps, n + "attn_norm")
        inner = g.op(
            "MatMul",
            [
                hidden,
                cast(p + "intermediate.dense.weight", weights[p + "intermediate.dense.weight"].T),
            ],
            n + "ffn_in",
        )
        activated = g.op(
            "BiasGelu",
            [inner, cast(p + "intermediate.dense.bias", weights[p + "intermediate.dense.bias"])],
            n + "gelu",
            domain=CONTRIB_DOMAIN,
        )
        outer = g.op(
            "MatMul",
            [activated, cast(p + "output.dense.weight", weights[p + "output.dense.weight"].T)],
            n + "ffn_out",
        )
        hidden = _skip_layer_norm(g, outer, hidden, weights, p + "output.", cast, eps, n + "out")
    if dtype is np.float16:
        hidden = g.op("Cast", [hidden], "hidden_fp32", to=FLOAT)
    _pool_and_normalise(g, hidden, mask)
    return _built(g, "bert_sentence_embedder_fused", config, contrib=True)


def _skip_layer_norm(
    g: GraphBuilder,
    x: str,
    residual: str,
    w: Weights,
    prefix: str,
    cast: Callable[[str, npt.NDArray[np.float32]], str],
    eps: float,
    name: str,
) -> str:
    """LayerNorm(x + dense bias + residual) in one kernel; ``prefix`` holds dense.bias and
    LayerNorm.weight/bias."""
    return g.op(
        "SkipLayerNormalization",
        [
            x,
            residual,
            cast(prefix + "LayerNorm.weight", w[prefix + "LayerNorm.weight"]),
            cast(prefix + "LayerNorm.bias", w[prefix + "LayerNorm.bias"]),
            cast(prefix + "dense.bias", w[prefix + "dense.bias"]),
        ],
        name,
        domain=CONTRIB_DOMAIN,
        epsilon=eps,
    )


def _check_weights(config: BertConfig, weights: Weights) -> None:
    missing = [key for key in _required_keys(config) if key not in weights]
    if missing:
        raise ModelCacheError(f"BERT weights are missing {len(missing)} tensors, e.g. {missing[0]}")


def _built(
    g: GraphBuilder, name: str, config: BertConfig, contrib: bool = False
) -> onnx.ModelProto:
    """Both graphs' model: token ids and mask in, unit vectors out."""
    return g.build(
        name,
        inputs=[
            tensor_info("input_ids", INT64, ["batch", "seq"]),
            tensor_info("attention_mask", INT64, ["batch", "seq"]),
        ],
        outputs=[tensor_info("embeddings", FLOAT, ["batch", config.hidden_size])],
        contrib=contrib,
    )


def _required_keys(config: BertConfig) -> list[str]:
    keys = [
        "embeddings.word_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    for layer in range(config.num_layers):
        p = f"encoder.layer.{layer}."
        for module in (
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ):
            keys += [p + module + ".weight", p + module + ".bias"]
        for norm in ("attention.output.LayerNorm", "output.LayerNorm"):
            keys += [p + norm + ".weight", p + norm + ".bias"]
    return keys


def _layer_norm(
    g: GraphBuilder,
    x: str,
    w: Weights,
    key: str,
    eps: float,
    name: str,
    dtype: type[np.floating] = np.float32,
) -> str:
    scale = g.weight(key + ".weight", w[key + ".weight"].astype(dtype))
    shift = g.weight(key + ".bias", w[key + ".bias"].astype(dtype))
    return g.op("LayerNormalization", [x, scale, shift], name, axis=-1, epsilon=eps)


def _linear(g: GraphBuilder, x: str, w: Weights, key: str, name: str) -> str:
    """``x @ W.T + b`` for a torch Linear stored as ``key.weight`` [out, in] and ``key.bias``."""
    weight = g.weight(key + ".weight", w[key + ".weight"].T)
    bias = g.weight(key + ".bias", w[key + ".bias"])
    return g.op("Add", [g.op("MatMul", [x, weight], name + ".matmul"), bias], name)


def _embeddings(
    g: GraphBuilder, config: BertConfig, w: Weights, dtype: type[np.floating] = np.float32
) -> str:
    """Word + position embeddings, layer-normalised; the tables in `dtype`."""
    # token_type_ids are always 0: adding row 0 of the token-type table to every word row here
    # gives the same float32 sums that adding it at run time would.
    words = w["embeddings.word_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    table = g.weight("embeddings.word_and_token_type", words.astype(dtype))
    positions = g.weight(
        "embeddings.position_embeddings.weight",
        w["embeddings.position_embeddings.weight"].astype(dtype),
    )
    seq_len = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
    position_rows = g.op(
        "Slice", [positions, g.ints([0]), seq_len, g.ints([0])], "embeddings.positions"
    )
    tokens = g.op("Gather", [table, "input_ids"], "embeddings.tokens", axis=0)
    summed = g.op("Add", [tokens, position_rows], "embeddings.sum")
    return _layer_norm(
        g, summed, w, "embeddings.LayerNorm", config.layer_norm_eps, "embeddings.norm", dtype
    )


def _attention_bias(g: GraphBuilder, mask: str) -> str:
    """[batch, 1, 1, seq]: 0 for real keys, a huge negative number for padded ones."""
    padding = g.op("Sub", [g.scalar(1.0), mask], "mask_inverted")
    bias = g.op("Mul", [padding, g.scalar(_MASKED_SCORE)], "mask_bias_2d")
    return g.op("Unsqueeze", [bias, g.ints([1, 2])], "mask_bias")


def _split_heads(g: GraphBuilder, x: str, config: BertConfig, perm: list[int], name: str) -> str:
    shape = g.ints([0, 0, config.num_heads, config.head_size])
    return g.op("Transpose", [g.op("Reshape", [x, shape], name + ".reshape")], name, perm=perm)


def _encoder_layer(
    g: GraphBuilder, config: BertConfig, w: Weights, layer: int, x: str, bias: str
) -> str:
    p = f"encoder.layer.{layer}."
    n = f"layer{layer}."
    eps = config.layer_norm_eps

    q = _linear(g, x, w, p + "attention.self.query", n + "q")
    k = _linear(g, x, w, p + "attention.self.key", n + "k")
    v = _linear(g, x, w, p + "attention.self.value", n + "v")
    q_heads = _split_heads(g, q, config, [0, 2, 1, 3], n + "q_heads")
    k_heads_t = _split_heads(g, k, config, [0, 2, 3, 1], n + "k_heads_t")
    v_heads = _split_heads(g, v, config, [0, 2, 1, 3], n + "v_heads")

    scores = g.op("MatMul", [q_heads, k_heads_t], n + "scores")
    scaled = g.op("Div", [scores, g.scalar(math.sqrt(config.head_size))], n + "scores_scaled")
    masked = g.op("Add", [scaled, bias], n + "scores_masked")
    probs = g.op("Softmax", [masked], n + "probs", axis=-1)
    context = g.op("MatMul", [probs, v_heads], n + "context_heads")
    context = g.op("Transpose", [context], n + "context_t", perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, g.ints([0, 0, config.hidden_size])], n + "context")

    attended = _linear(g, context, w, p + "attention.output.dense", n + "attn_out")
    residual = g.op("Add", [attended, x], n + "attn_residual")
    x = _layer_norm(g, residual, w, p + "attention.output.LayerNorm", eps, n + "attn_norm")

    inner = _linear(g, x, w, p + "intermediate.dense", n + "ffn_in")
    activated = _gelu(g, inner, n + "gelu")
    outer = _linear(g, activated, w, p + "output.dense", n + "ffn_out")
    residual = g.op("Add", [outer, x], n + "ffn_residual")
    return _layer_norm(g, residual, w, p + "output.LayerNorm", eps, n + "out")


def _gelu(g: GraphBuilder, x: str, name: str) -> str:
    """Exact GELU, ``x * 0.5 * (1 + erf(x / sqrt(2)))``, in the form ORT fuses into one op."""
    scaled = g.op("Div", [x, g.scalar(math.sqrt(2.0))], name + ".div")
    erf = g.op("Erf", [scaled], name + ".erf")
    shifted = g.op("Add", [erf, g.scalar(1.0)], name + ".add")
    product = g.op("Mul", [x, shifted], name + ".mul")
    return g.op("Mul", [product, g.scalar(0.5)], name)


def _pool_and_normalise(g: GraphBuilder, hidden: str, mask: str) -> str:
    weights = g.op("Unsqueeze", [mask, g.ints([2])], "pool.mask")
    masked = g.op("Mul", [hidden, weights], "pool.masked")
    summed = g.op("ReduceSum", [masked, g.ints([1])], "pool.sum", keepdims=0)
    count = g.op("ReduceSum", [weights, g.ints([1])], "pool.count", keepdims=0)
    count = g.op("Max", [count, g.scalar(1e-9)], "pool.count_clamped")
    mean = g.op("Div", [summed, count], "pool.mean")
    norm = g.op("ReduceL2", [mean], "norm.l2", axes=[1], keepdims=1)
    norm = g.op("Max", [norm, g.scalar(1e-12)], "norm.l2_clamped")
    return g.op("Div", [mean, norm], "embeddings")
