"""Build a llama decoder with a key-value cache as one ONNX graph, from GGUF weights, without torch.

One call runs new tokens (a whole prompt, or the one token just generated) against the cache
of the tokens before them:

    input_ids              int64   [1, new]
    seqlens_k              int32   [1]        tokens in the cache after this call, minus one
    total_sequence_length  int32   []         tokens in the cache after this call
    logits_from            int64   [1]        the first new position whose logits are wanted
    all_logits             bool    []         every logit exact (sampling, re-scoring), or only
                                              those that can win (greedy decoding: faster)
    past_key.N/past_value.N  float32 [1, kv_heads, past, head_dim]   for each layer N
  → logits                 float32 [1, new − logits_from, vocab]
    present_key.N/present_value.N  float32 [1, kv_heads, past + new, head_dim]

Generation asks for the last position's logits only; re-scoring a text (verification) asks for
every position after the prompt's start, in one pass. The LM head (the tied embedding, the
largest matrix) costs a third of a decode step in fp32; greedy decoding asks for the best 64 of
each position exact, the rest from an int8 pass (`_Builder.head`).

The weights stay as the file quantized them. A Q4_1 matrix (weight = d·q + m per block of 32,
held as d·(q − z) + m' by _gguf.py) runs as ONNX Runtime's MatMulNBits on (q, d, z), plus the
minimums' share: the activations summed per block times m', a matrix 32 times smaller.
MatMulNBits' float zero points would be exact too, but take a slow path (30× slower measured).
Attention is GroupQueryAttention (9 query heads share 3 key-value heads), with RoPE applied to
interleaved pairs: GGUF stores q and k permuted for that form.

Two modes (`Precision`). EXACT computes every product in fp32 (accuracy_level 0), the tied
embedding/LM head too, from the file's Q8_0 values: it equals transformers' fp32 run of the same
file. FAST rounds the activations to int8 per block of 32 (accuracy_level 4, as llama.cpp does)
where that is safe: the inputs of the attention output and of the MLP's gate/up. The inputs of
q/k/v and of the MLP's down projection carry outlier channels that int8 rounding wrecks: with
them at int8 too (llama.cpp's arithmetic), greedy output on the chat prompts turns to nonsense
from the first token, in llama.cpp and here alike, and teacher-forced top-1 agreement with the
reference falls to 97.6%. Measured in benchmarks/bench_generate.py and tests/models.
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt
import onnx

from tokenweave.models._gguf import BLOCK, GgufModel, LlamaConfig, QuantizedMatrix
from tokenweave.models._onnx_graph import (
    BOOL,
    CONTRIB_DOMAIN,
    FLOAT,
    FLOAT16,
    INT32,
    INT64,
    GraphBuilder,
    tensor_info,
)

#: Bumped whenever the graph changes (its inputs, outputs or computation): a cache prepared by
#: another version is built again (2: the `all_logits` input and the greedy LM head).
DECODER_GRAPH = 2
#: How many of each position's best tokens by the int8 LM head are scored again in fp32.
RESCORED = 64


class Precision(enum.Enum):
    EXACT = "exact"
    FAST = "fast"
    #: For GPUs: activations, the key-value cache and the LM head in fp16 (weights still the
    #: file's 4-bit blocks, scales in fp16); the first norm computed in fp32, the others and
    #: attention accumulate in fp32 inside their kernels; logits leave as fp32.
    HALF = "fp16"

    def accuracy_level(self, role: str) -> int:
        """MatMulNBits' accuracy_level for the products of `role` (0: fp32, 4: int8)."""
        return 4 if self is Precision.FAST and role in _INT8_ROLES else 0


#: The products FAST runs on int8 activations (see the module's docstring).
_INT8_ROLES = frozenset({"o", "gate_up"})


def _concat(matrices: list[QuantizedMatrix]) -> QuantizedMatrix:
    first = matrices[0]
    if any((m.bits, m.shape[1]) != (first.bits, first.shape[1]) for m in matrices):
        raise ValueError("only matrices of one quantization and width are fused")
    return QuantizedMatrix(
        np.concatenate([m.q for m in matrices]),
        np.concatenate([m.scales for m in matrices]),
        np.concatenate([m.zero_points for m in matrices]),
        np.concatenate([m.minimums for m in matrices]),
        first.bits,
    )


def _packed(matrix: QuantizedMatrix) -> npt.NDArray[np.uint8]:
    """MatMulNBits' B: [N, blocks, bytes per block]; 4-bit values two to a byte, low first."""
    rows, cols = matrix.shape
    q = matrix.q.reshape(rows, cols // BLOCK, BLOCK)
    if matrix.bits == 8:
        return np.ascontiguousarray(q)
    return np.ascontiguousarray(q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _zero_points(matrix: QuantizedMatrix) -> npt.NDArray[np.uint8]:
    """MatMulNBits' zero points: a byte per block (8 bits), or two blocks a byte, low first,
    each row padded to whole bytes (4 bits)."""
    if matrix.bits == 8:
        return np.ascontiguousarray(matrix.zero_points.reshape(-1))
    rows, blocks = matrix.zero_points.shape
    padded = np.zeros((rows, blocks + blocks % 2), np.uint8)
    padded[:, :blocks] = matrix.zero_points
    return np.ascontiguousarray(padded[:, 0::2] | (padded[:, 1::2] << 4)).reshape(-1)


class _Builder:
    def __init__(self, model: GgufModel, precision: Precision) -> None:
        self.model = model
        self.config: LlamaConfig = model.config
        self.precision = precision
        self.g = GraphBuilder()
        self._block_sums: dict[str, str] = {}
        half = precision is Precision.HALF
        #: The activations' type: numpy's, and ONNX's.
        self.dtype: type[np.floating] = np.float16 if half else np.float32
        self.elem = FLOAT16 if half else FLOAT

    def floats(self, array: npt.NDArray[np.floating]) -> npt.NDArray[np.floating]:
        return np.ascontiguousarray(array.astype(self.dtype))

    def linear(self, x: str, matrix: QuantizedMatrix, name: str) -> str:
        """x @ matrixᵀ with the weights quantized as they are (`name` is layer.role)."""
        rows, cols = matrix.shape
        g = self.g
        accuracy = self.precision.accuracy_level(name.rsplit(".", 1)[-1])
        y = g.op(
            "MatMulNBits",
            [
                x,
                g.weight(f"{name}.q", _packed(matrix)),
                g.weight(f"{name}.scales", self.floats(matrix.scales.reshape(-1))),
                g.weight(f"{name}.zero_points", _zero_points(matrix)),
            ],
            f"{name}.matmul",
            domain=CONTRIB_DOMAIN,
            K=cols,
            N=rows,
            bits=matrix.bits,
            block_size=BLOCK,
            accuracy_level=accuracy,
        )
        if not matrix.minimums.any():
            return y
        sums = self._block_sums.get(x)
        if sums is None:  # Σ x over each block of 32, once per input
            blocks = g.op("Reshape", [x, g.ints([0, 0, cols // BLOCK, BLOCK])], f"{x}.blocks")
            sums = g.op("ReduceSum", [blocks, g.ints([-1])], f"{x}.block_sums", keepdims=0)
            self._block_sums[x] = sums
        minimums = g.weight(f"{name}.minimums", self.floats(matrix.minimums.T))
        shift = g.op("MatMul", [sums, minimums], f"{name}.minimums_share")
        return g.op("Add", [y, shift], f"{name}.out")

    def rms_norm(self, x: str, weight: str, name: str) -> str:
        """x / sqrt(mean(x²) + ε) · w, in plain operators and fp32 (the first norm; the others
        are fused with their residual addition)."""
        g = self.g
        if self.elem != FLOAT:
            x = g.op("Cast", [x], f"{name}.fp32", to=FLOAT)
            normed = self._rms_norm(x, weight, f"{name}.in_fp32")
            return g.op("Cast", [normed], name, to=self.elem)
        return self._rms_norm(x, weight, name)

    def _rms_norm(self, x: str, weight: str, name: str) -> str:
        g = self.g
        square = g.op("Mul", [x, x], f"{name}.square")
        mean = g.op("ReduceMean", [square], f"{name}.mean", axes=[-1], keepdims=1)
        shifted = g.op("Add", [mean, g.scalar(self.config.rms_eps)], f"{name}.var_eps")
        root = g.op("Sqrt", [shifted], f"{name}.rms")
        normed = g.op("Div", [x, root], f"{name}.normed")
        return g.op("Mul", [normed, g.weight(f"{name}.weight", self.model.vector(weight))], name)

    def add_and_norm(self, x: str, residual: str, weight: str, name: str) -> tuple[str, str]:
        """(norm(x + residual), x + residual)."""
        normed, _, _, total = self.g.ops(
            "SkipSimplifiedLayerNormalization",
            [x, residual, self.g.weight(f"{name}.weight", self.floats(self.model.vector(weight)))],
            name,
            [f"{name}.out", "", "", f"{name}.sum"],
            domain=CONTRIB_DOMAIN,
            epsilon=self.config.rms_eps,
        )
        return normed, total

    def head(self, wanted: str, table: str, embedding: QuantizedMatrix) -> str:
        """The logits of the wanted positions, from the tied embedding, two ways (the input
        `all_logits` chooses). True: an fp32 Gemm over the whole vocabulary, about a third of
        a decode step (sampling needs every logit exact). False: the file's 8-bit values at
        int8 compute (a quarter of the time), then each position's `RESCORED` best computed
        again in fp32 and put back: the tokens that can win are scored exactly, the long tail
        is approximate (enough for greedy decoding, whose choice is then the same)."""
        c, g = self.config, self.g
        shape: list[str | int] = [1, "wanted", c.vocab]
        full = g.branch()
        flat = full.op("Reshape", [wanted, full.ints([-1, c.hidden])], "lm_head.rows")
        scores = full.op("Gemm", [flat, table], "lm_head.gemm", transB=1)
        full.op("Reshape", [scores, full.ints([1, -1, c.vocab])], "lm_head.all")
        best = g.branch()
        rough = best.op(
            "MatMulNBits",
            [
                wanted,
                best.weight("lm_head.q", _packed(embedding)),
                best.weight("lm_head.scales", embedding.scales.reshape(-1)),
                best.weight("lm_head.zero_points", _zero_points(embedding)),
            ],
            "lm_head.rough",
            domain=CONTRIB_DOMAIN,
            K=c.hidden,
            N=c.vocab,
            bits=embedding.bits,
            block_size=BLOCK,
            accuracy_level=4,
        )
        top = best.ints([RESCORED])
        _, ids = best.ops("TopK", [rough, top], "lm_head.top", ["lm_head.top", "lm_head.ids"])
        rows = best.op("Gather", [table, ids], "lm_head.best_rows", axis=0)  # [1, n, k, hidden]
        column = best.op("Unsqueeze", [wanted, best.ints([-1])], "lm_head.column")
        exact = best.op("MatMul", [rows, column], "lm_head.exact")  # [1, n, k, 1]
        exact = best.op("Squeeze", [exact, best.ints([-1])], "lm_head.best_scores")
        best.op("ScatterElements", [rough, ids, exact], "lm_head.rescored", axis=-1)
        return g.op(
            "If",
            ["all_logits"],
            "logits",
            then_branch=full.subgraph("all_logits", [tensor_info("lm_head.all", FLOAT, shape)]),
            else_branch=best.subgraph(
                "best_logits", [tensor_info("lm_head.rescored", FLOAT, shape)]
            ),
        )

    def half_head(self, wanted: str, table: str) -> str:
        """The logits of the wanted positions in one fp16 product over the whole vocabulary
        (a GPU does it in microseconds: no shortcut for greedy steps), returned as fp32."""
        c, g = self.config, self.g
        flat = g.op("Reshape", [wanted, g.ints([-1, c.hidden])], "lm_head.rows")
        scores = g.op("Gemm", [flat, table], "lm_head.gemm", transB=1)
        scores = g.op("Cast", [scores], "lm_head.fp32", to=FLOAT)
        return g.op("Reshape", [scores, g.ints([1, -1, c.vocab])], "logits")

    def rope_caches(self) -> tuple[str, str]:
        c = self.config
        inverse = c.rope_base ** (-np.arange(0, c.head_dim, 2, dtype=np.float64) / c.head_dim)
        angles = np.arange(c.context, dtype=np.float64)[:, None] * inverse[None, :]
        return (
            self.g.weight("rope.cos", self.floats(np.cos(angles))),
            self.g.weight("rope.sin", self.floats(np.sin(angles))),
        )

    def build(self) -> onnx.ModelProto:
        c, g, m = self.config, self.g, self.model
        embedding = m.matrix("token_embd.weight")
        table = g.weight("token_embd.dequantized", self.floats(embedding.dequantized()))
        x = g.op("Gather", [table, "input_ids"], "embedded", axis=0)
        cos, sin = self.rope_caches()
        normed = self.rms_norm(x, "blk.0.attn_norm.weight", "layer0.attn_norm")
        residual = x
        kv = c.kv_heads * c.head_dim
        for layer in range(c.layers):
            p = f"blk.{layer}"
            qkv = _concat([m.matrix(f"{p}.attn_{w}.weight") for w in ("q", "k", "v")])
            fused = self.linear(normed, qkv, f"layer{layer}.qkv")
            q, k, v = g.ops(
                "Split",
                [fused, g.ints([c.hidden, kv, kv])],
                f"layer{layer}.split_qkv",
                [f"layer{layer}.q", f"layer{layer}.k", f"layer{layer}.v"],
                axis=-1,
            )
            attended, _, _ = g.ops(
                "GroupQueryAttention",
                [q, k, v, f"past_key.{layer}", f"past_value.{layer}", "seqlens_k",
                 "total_sequence_length", cos, sin],
                f"layer{layer}.attention",
                [f"layer{layer}.attended", f"present_key.{layer}", f"present_value.{layer}"],
                domain=CONTRIB_DOMAIN,
                num_heads=c.heads,
                kv_num_heads=c.kv_heads,
                do_rotary=1,
                rotary_interleaved=1,
            )  # fmt: skip
            out = self.linear(attended, m.matrix(f"{p}.attn_output.weight"), f"layer{layer}.o")
            normed, residual = self.add_and_norm(
                out, residual, f"{p}.ffn_norm.weight", f"layer{layer}.ffn_norm"
            )
            gate_up = _concat([m.matrix(f"{p}.ffn_gate.weight"), m.matrix(f"{p}.ffn_up.weight")])
            gu = self.linear(normed, gate_up, f"layer{layer}.gate_up")
            gate, up = g.ops(
                "Split",
                [gu, g.ints([c.ffn, c.ffn])],
                f"layer{layer}.split_gate_up",
                [f"layer{layer}.gate", f"layer{layer}.up"],
                axis=-1,
            )
            silu = g.op(
                "Mul",
                [gate, g.op("Sigmoid", [gate], f"layer{layer}.sigmoid")],
                f"layer{layer}.silu",
            )
            hidden = g.op("Mul", [silu, up], f"layer{layer}.swiglu")
            down = self.linear(hidden, m.matrix(f"{p}.ffn_down.weight"), f"layer{layer}.down")
            last = layer == c.layers - 1
            norm = "output_norm.weight" if last else f"blk.{layer + 1}.attn_norm.weight"
            normed, residual = self.add_and_norm(
                down, residual, norm, "final_norm" if last else f"layer{layer + 1}.attn_norm"
            )
        wanted = g.op(
            "Slice", [normed, "logits_from", g.ints([2**62]), g.ints([1])], "wanted_positions"
        )
        if self.elem == FLOAT:
            self.head(wanted, table, embedding)
        else:
            self.half_head(wanted, table)
        return g.build(
            "llama_decoder",
            inputs=[
                tensor_info("input_ids", INT64, [1, "new"]),
                tensor_info("seqlens_k", INT32, [1]),
                tensor_info("total_sequence_length", INT32, []),
                tensor_info("logits_from", INT64, [1]),
                tensor_info("all_logits", BOOL, []),
                *[
                    tensor_info(f"{kind}.{layer}", self.elem, [1, c.kv_heads, "past", c.head_dim])
                    for layer in range(c.layers)
                    for kind in ("past_key", "past_value")
                ],
            ],
            outputs=[
                tensor_info("logits", FLOAT, [1, "wanted", c.vocab]),
                *[
                    tensor_info(f"{kind}.{layer}", self.elem, [1, c.kv_heads, "total", c.head_dim])
                    for layer in range(c.layers)
                    for kind in ("present_key", "present_value")
                ],
            ],
            contrib=True,
        )


def build_llama_decoder(model: GgufModel, precision: Precision) -> onnx.ModelProto:
    """The ONNX decoder of a llama GGUF file, in `precision`."""
    return _Builder(model, precision).build()
