"""EmbeddingSession: token-id windows in, unit-length embeddings out, via ONNX Runtime."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from tokenweave.models._cache import PreparedModel
from tokenweave.models._errors import ModelHashMismatchError
from tokenweave.models._tokenizer import (
    SPECIAL_TOKENS_PER_WINDOW,
    SpecialTokens,
    TokenIds,
    load_tokenizer,
)

logger = logging.getLogger(__name__)

Embeddings = npt.NDArray[np.float32]

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


#: An execution provider, by name or with its options (("CUDAExecutionProvider",
#: {"device_id": "1"})).
Provider = str | tuple[str, dict[str, str]]


def default_providers(gpu: int | None = None) -> list[Provider]:
    """CUDA (on device `gpu`: default 0) then CPU when this onnxruntime build has CUDA, else
    CPU alone (a node asked for a GPU it cannot use says so, and runs)."""
    if CUDA_PROVIDER in ort.get_available_providers():
        cuda: Provider = CUDA_PROVIDER if gpu is None else (CUDA_PROVIDER, {"device_id": str(gpu)})
        return [cuda, CPU_PROVIDER]
    if gpu is not None:
        logger.warning(
            "GPU %d asked for, but this onnxruntime build has no CUDA provider (install "
            "onnxruntime-gpu): running on the CPU",
            gpu,
        )
    return [CPU_PROVIDER]


class EmbeddingSession:
    """One ONNX Runtime session for a prepared model; ``embed_windows`` is synchronous and
    thread-safe, so async callers run it in an executor."""

    def __init__(
        self,
        prepared: PreparedModel,
        *,
        providers: Sequence[Provider] | None = None,
        intra_op_threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.prepared = prepared
        self.batch_size = batch_size
        tokenizer = load_tokenizer(prepared)
        self.special_tokens = SpecialTokens.from_tokenizer(tokenizer)
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

        # Hash the very bytes handed to ONNX Runtime, so a file swapped after load_prepared is
        # caught too.
        model_bytes = prepared.onnx_path.read_bytes()
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != prepared.sha256:
            raise ModelHashMismatchError(prepared.onnx_path, prepared.sha256, actual)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        requested = list(providers) if providers is not None else default_providers()
        self._session = ort.InferenceSession(model_bytes, options, providers=requested)
        logger.info("loaded %s on %s", prepared.name, ", ".join(self.providers))

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return list(self._session.get_providers())

    @property
    def dim(self) -> int:
        return self.prepared.spec.dim

    @property
    def max_window_tokens(self) -> int:
        """Longest window ``embed_windows`` accepts: the model limit minus [CLS] and [SEP]."""
        return self.prepared.spec.max_tokens - SPECIAL_TOKENS_PER_WINDOW

    def embed_windows(self, windows: Sequence[TokenIds]) -> Embeddings:
        """Embeddings [len(windows), dim] of token-id windows given without special tokens.

        Windows are sorted by length so each batch pads little, run ``batch_size`` at a time,
        and returned in input order.
        """
        checked = [self._checked(index, window) for index, window in enumerate(windows)]
        result = np.empty((len(checked), self.dim), dtype=np.float32)
        order = sorted(range(len(checked)), key=lambda i: len(checked[i]), reverse=True)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            input_ids, attention_mask = self._pack([checked[i] for i in rows])
            (embeddings,) = self._session.run(
                ["embeddings"], {"input_ids": input_ids, "attention_mask": attention_mask}
            )
            result[rows] = embeddings
        return result

    def _checked(self, index: int, window: TokenIds) -> TokenIds:
        array = np.asarray(window)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(
                f"window {index}: expected a 1-D array of integer token ids, "
                f"got shape {array.shape} dtype {array.dtype}"
            )
        if len(array) > self.max_window_tokens:
            raise ValueError(
                f"window {index}: {len(array)} tokens, more than the {self.max_window_tokens} "
                f"that {self.prepared.name} accepts besides [CLS] and [SEP]"
            )
        if len(array) and (array.min() < 0 or array.max() >= self._vocab_size):
            raise ValueError(
                f"window {index}: token ids must lie in 0..{self._vocab_size - 1}, "
                f"got {array.min()}..{array.max()}"
            )
        return array.astype(np.int64, copy=False)

    def _pack(self, windows: list[TokenIds]) -> tuple[TokenIds, TokenIds]:
        """[CLS] window [SEP], right-padded to the longest window; and the matching mask."""
        special = self.special_tokens
        width = max(len(window) for window in windows) + SPECIAL_TOKENS_PER_WINDOW
        input_ids = np.full((len(windows), width), special.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            end = len(window) + 1
            input_ids[row, 0] = special.cls_id
            input_ids[row, 1:end] = window
            input_ids[row, end] = special.sep_id
            attention_mask[row, : end + 1] = 1
        return input_ids, attention_mask
