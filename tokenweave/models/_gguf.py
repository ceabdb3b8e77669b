"""GGUF files: a llama model's hyper-parameters, its quantized weights and its tokenizer.

GGUF (llama.cpp's format) holds the architecture in its metadata, each tensor in a ggml
quantization, and the tokenizer's tokens and merges. The `gguf` package (PyPI) reads the file;
the blocks are unpacked here, without dequantizing, so the ONNX graph keeps the weights 4-bit:

* Q4_1: blocks of 32 weights, each block a scale d and a minimum m (fp16) and 32 4-bit values q;
  a weight is d·q + m. ggml packs value j in the low nibble of byte j and value j+16 in its high
  nibble.
* Q8_0: blocks of 32 weights, a scale d (fp16) and 32 signed bytes q; a weight is d·q.

Matrices come as `QuantizedMatrix` in ONNX Runtime's MatMulNBits order (row n of an [N, K]
matrix is output n): weight = d·(q − z) + m', with q unsigned. Q8_0's q is shifted by 128 (z =
128, m' = 0). A Q4_1 block gets the integer zero point nearest −m/d and keeps the rest of its
minimum, m' = m + d·z (at most d/2): the same weights, with (q − z) centred on 0, so that a
matrix product on activations rounded to int8 errs as little as llama.cpp's (with z = 0, the
rounding error of Σ d·q·x, q averaging 8, is not cancelled by the minimum's term).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenweave.models._errors import ModelCacheError

BLOCK = 32
#: ggml quantization type ids (ggml.h): the ones SmolLM2's file uses.
F32, F16, Q4_1, Q8_0 = 0, 1, 3, 8
#: Bytes per block of 32 weights.
_BLOCK_BYTES = {Q4_1: 20, Q8_0: 34}
#: GGUF token types (llama.cpp's llama_token_type): control tokens are the special ones.
TOKEN_CONTROL = 3


@dataclass(frozen=True, slots=True)
class LlamaConfig:
    """A llama decoder's hyper-parameters, as the GGUF metadata gives them."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    context: int
    rope_base: float
    rope_dims: int
    rms_eps: float

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def check(self) -> None:
        if self.hidden % self.heads or self.heads % self.kv_heads:
            raise ModelCacheError(
                f"{self.heads} heads of {self.kv_heads} key-value heads do not divide "
                f"hidden size {self.hidden}"
            )
        if self.rope_dims != self.head_dim:
            raise ModelCacheError(
                f"RoPE over {self.rope_dims} of {self.head_dim} dimensions is not supported"
            )


@dataclass(frozen=True, slots=True)
class QuantizedMatrix:
    """An [N, K] matrix in blocks of 32 along K: weight = scale·(q − zero_point) + minimum."""

    #: [N, K] unsigned values (0..15 for 4 bits, 0..255 for 8).
    q: npt.NDArray[np.uint8]
    #: [N, K/32] each.
    scales: npt.NDArray[np.float32]
    zero_points: npt.NDArray[np.uint8]
    minimums: npt.NDArray[np.float32]
    bits: int

    @property
    def shape(self) -> tuple[int, int]:
        rows, cols = self.q.shape
        return rows, cols

    def dequantized(self) -> npt.NDArray[np.float32]:
        rows, cols = self.shape
        blocks = self.q.reshape(rows, cols // BLOCK, BLOCK).astype(np.float32)
        centred = blocks - self.zero_points[..., None].astype(np.float32)
        weights = centred * self.scales[..., None] + self.minimums[..., None]
        return weights.reshape(rows, cols).astype(np.float32)


def _unpack(raw: npt.NDArray[np.uint8], kind: int, rows: int, cols: int) -> QuantizedMatrix:
    blocks = raw.reshape(rows, cols // BLOCK, _BLOCK_BYTES[kind])
    scales = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if kind == Q4_1:
        minimums = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        packed = blocks[..., 4:20]
        q = np.concatenate([packed & 0x0F, packed >> 4], axis=-1)  # values j, then j + 16
        with np.errstate(divide="ignore", invalid="ignore"):
            nearest = np.where(scales > 0, np.rint(-minimums / scales), 0.0)
        zero_points = np.clip(nearest, 0, 15).astype(np.uint8)
        rest = (minimums + scales * zero_points).astype(np.float32)
        return QuantizedMatrix(q.reshape(rows, cols), scales, zero_points, rest, bits=4)
    signed = blocks[..., 2:34].copy().view(np.int8)
    q = (signed.astype(np.int16) + 128).astype(np.uint8)
    return QuantizedMatrix(
        q.reshape(rows, cols),
        scales,
        np.full(scales.shape, 128, np.uint8),
        np.zeros_like(scales),
        bits=8,
    )


class GgufModel:
    """A llama GGUF file, read lazily (the `gguf` reader maps it; blocks are unpacked on use)."""

    def __init__(self, path: Path) -> None:
        try:
            import gguf
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise ModelCacheError("reading GGUF needs the `gguf` package") from exc
        self.path = path
        try:
            self._reader = gguf.GGUFReader(path)
        except (OSError, ValueError) as exc:
            raise ModelCacheError(f"{path} is not a readable GGUF file: {exc}") from exc
        self._tensors = {t.name: t for t in self._reader.tensors}

    def field(self, key: str) -> Any:
        field = self._reader.fields.get(key)
        if field is None:
            raise ModelCacheError(f"{self.path.name} has no metadata {key!r}")
        return field.contents()

    @cached_property
    def config(self) -> LlamaConfig:
        architecture = self.field("general.architecture")
        if architecture != "llama":
            raise ModelCacheError(f"{self.path.name}: architecture {architecture!r} is not llama")
        config = LlamaConfig(
            layers=int(self.field("llama.block_count")),
            hidden=int(self.field("llama.embedding_length")),
            heads=int(self.field("llama.attention.head_count")),
            kv_heads=int(self.field("llama.attention.head_count_kv")),
            ffn=int(self.field("llama.feed_forward_length")),
            vocab=len(self.field("tokenizer.ggml.tokens")),
            context=int(self.field("llama.context_length")),
            rope_base=float(self.field("llama.rope.freq_base")),
            rope_dims=int(self.field("llama.rope.dimension_count")),
            rms_eps=float(self.field("llama.attention.layer_norm_rms_epsilon")),
        )
        config.check()
        return config

    def vector(self, name: str) -> npt.NDArray[np.float32]:
        """A 1-D float tensor (a norm's weights)."""
        tensor = self._tensor(name)
        if int(tensor.tensor_type) != F32:
            raise ModelCacheError(f"{name} is {tensor.tensor_type.name}, expected F32")
        return np.asarray(tensor.data, dtype=np.float32).reshape(-1).copy()

    def matrix(self, name: str) -> QuantizedMatrix:
        """A quantized [N, K] matrix: N outputs (GGUF's second dimension), K inputs."""
        tensor = self._tensor(name)
        kind = int(tensor.tensor_type)
        if kind not in _BLOCK_BYTES:
            raise ModelCacheError(
                f"{name} is {tensor.tensor_type.name}: only Q4_1 and Q8_0 are read"
            )
        cols, rows = (int(n) for n in tensor.shape)
        if cols % BLOCK:
            raise ModelCacheError(f"{name}: {cols} columns are not whole blocks of {BLOCK}")
        return _unpack(np.asarray(tensor.data, dtype=np.uint8), kind, rows, cols)

    def _tensor(self, name: str) -> Any:
        tensor = self._tensors.get(name)
        if tensor is None:
            raise ModelCacheError(f"{self.path.name} has no tensor {name!r}")
        return tensor

    # -- tokenizer ------------------------------------------------------------------------

    @property
    def bos_id(self) -> int:
        return int(self.field("tokenizer.ggml.bos_token_id"))

    @property
    def eos_id(self) -> int:
        return int(self.field("tokenizer.ggml.eos_token_id"))

    @property
    def chat_template(self) -> str:
        return str(self.field("tokenizer.chat_template"))

    def tokenizer_json(self) -> str:
        """The byte-level BPE tokenizer the file describes, as a `tokenizers` JSON document.

        GGUF's "smollm" pre-tokenizer is GPT-2's split with every digit on its own (llama.cpp's
        LLAMA_VOCAB_PRE_TYPE_SMOLLM); control tokens are special, matched before splitting."""
        from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

        model = self.field("tokenizer.ggml.model")
        pre = self.field("tokenizer.ggml.pre")
        if model != "gpt2" or pre not in ("smollm",):
            raise ModelCacheError(
                f"tokenizer {model!r} with pre-tokenizer {pre!r} is not supported"
            )
        tokens: list[str] = self.field("tokenizer.ggml.tokens")
        types: list[int] = self.field("tokenizer.ggml.token_type")
        merges = [tuple(m.split(" ", 1)) for m in self.field("tokenizer.ggml.merges")]
        vocab = {token: i for i, token in enumerate(tokens)}
        tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        tokenizer.decoder = decoders.ByteLevel()
        tokenizer.add_special_tokens(
            [
                AddedToken(token, special=True, normalized=False)
                for token, kind in zip(tokens, types, strict=True)
                if kind == TOKEN_CONTROL
            ]
        )
        return str(tokenizer.to_str())
