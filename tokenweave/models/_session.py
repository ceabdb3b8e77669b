"""EmbeddingSession: token-id windows in, unit-length embeddings out, via ONNX Runtime."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.metadata
import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from tokenweave.errors import InvalidArgumentError
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
    """CUDA (on device `gpu`: default 0) then CPU when this onnxruntime build has CUDA and the
    driver sees a device, else CPU alone (a node asked for a GPU it cannot use says so, and
    runs). A device number the driver does not have is an InvalidArgumentError."""
    _warn_of_mixed_builds()
    if CUDA_PROVIDER not in ort.get_available_providers():
        if gpu is not None:
            logger.warning(
                "GPU %d asked for, but this onnxruntime build has no CUDA provider (install "
                "tokenweave[gpu]): running on the CPU",
                gpu,
            )
        return [CPU_PROVIDER]
    devices = cuda_device_count()
    if devices == 0:
        # onnxruntime-gpu lists its CUDA provider on any machine; without a device it would
        # fail to start it at every session, with an error in the log each time.
        logger.warning("onnxruntime has CUDA, but no CUDA device is visible: running on the CPU")
        return [CPU_PROVIDER]
    if gpu is not None and not 0 <= gpu < devices:
        raise InvalidArgumentError(
            f"GPU {gpu} asked for, but the CUDA driver sees {devices} (0..{devices - 1})"
        )
    _load_cuda_libraries()
    cuda: Provider = CUDA_PROVIDER if gpu is None else (CUDA_PROVIDER, {"device_id": str(gpu)})
    return [cuda, CPU_PROVIDER]


def onnxruntime_builds() -> list[str]:
    """The ONNX Runtime distributions installed (more than one: they overwrite each other's
    files, and which build runs depends on the order they were installed in)."""
    found = []
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


@functools.cache
def _warn_of_mixed_builds() -> None:
    builds = onnxruntime_builds()
    if len(builds) > 1:
        logger.warning(
            "%s are both installed: they share one module and break each other. Keep one: "
            "pip uninstall -y %s, then pip install 'tokenweave[cpu]' or 'tokenweave[gpu]'",
            " and ".join(builds),
            " ".join(builds),
        )


@functools.cache
def cuda_device_count() -> int:
    """CUDA devices the driver sees, asked of the driver library itself (0 without one)."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


@functools.cache
def _load_cuda_libraries() -> None:
    """Load CUDA's and cuDNN's libraries from their PyPI wheels (the `gpu` extra installs them),
    so no system CUDA toolkit or LD_LIBRARY_PATH is needed; libraries already loadable the
    usual way are used as they are."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def provider_name(provider: Provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


class EmbeddingSession:
    """One ONNX Runtime session for a prepared model; ``embed_windows`` is synchronous and
    thread-safe, so async callers run it in an executor.

    On CUDA it runs the model's fused fp16 graph when the cache holds one (``fp16=None``: by
    the provider; True or False to choose), else the standard fp32 graph; both give the same
    embeddings within the verification tolerance (cosine ≥ 0.9999 a window).
    """

    def __init__(
        self,
        prepared: PreparedModel,
        *,
        providers: Sequence[Provider] | None = None,
        intra_op_threads: int | None = None,
        batch_size: int = 32,
        fp16: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.prepared = prepared
        self.batch_size = batch_size
        tokenizer = load_tokenizer(prepared)
        self.special_tokens = SpecialTokens.from_tokenizer(tokenizer)
        self._vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

        requested = list(providers) if providers is not None else default_providers()
        if fp16 is None:
            fp16 = prepared.fp16_path is not None and provider_name(requested[0]) == CUDA_PROVIDER
        if not fp16:
            path, expected = prepared.onnx_path, prepared.sha256
        elif prepared.fp16_path is not None and prepared.fp16_sha256 is not None:
            path, expected = prepared.fp16_path, prepared.fp16_sha256
        else:
            raise ValueError(
                f"{prepared.name} has no fp16 graph in the cache: prepare it with fp16=True "
                "(`tokenweave models prepare --fp16`)"
            )
        self.precision = "fp16" if fp16 else "fp32"
        # Hash the very bytes handed to ONNX Runtime, so a file swapped after load_prepared is
        # caught too.
        model_bytes = path.read_bytes()
        actual = hashlib.sha256(model_bytes).hexdigest()
        if actual != expected:
            raise ModelHashMismatchError(path, expected, actual)

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        self._session = ort.InferenceSession(model_bytes, options, providers=requested)
        logger.info(
            "loaded %s (%s) on %s", prepared.name, self.precision, ", ".join(self.providers)
        )

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
        and returned in input order. Checking and packing are whole-array operations: on a GPU
        a batch of 1,024 windows runs in tens of milliseconds, and a loop over its rows in
        Python would cost as much again.
        """
        return self.embed_checked(self.check_windows(windows))

    def embed_checked(self, checked: Sequence[TokenIds]) -> Embeddings:
        """``embed_windows`` for windows that ``check_windows`` returned."""
        result = np.empty((len(checked), self.dim), dtype=np.float32)
        if not checked:
            return result
        lengths = np.fromiter((len(w) for w in checked), dtype=np.int64, count=len(checked))
        order = np.argsort(-lengths, kind="stable")
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            input_ids, attention_mask = self._pack([checked[i] for i in rows], lengths[rows])
            (embeddings,) = self._session.run(
                ["embeddings"], {"input_ids": input_ids, "attention_mask": attention_mask}
            )
            result[rows] = embeddings
        return result

    def check_windows(self, windows: Sequence[TokenIds]) -> list[TokenIds]:
        """The windows as int64 arrays; ValueError naming the first bad one."""
        checked: list[TokenIds] = []
        limit = self.max_window_tokens
        int64 = np.dtype(np.int64)
        for index, window in enumerate(windows):
            array = np.asarray(window)
            if array.ndim != 1 or array.dtype.kind not in "iu":
                raise ValueError(
                    f"window {index}: expected a 1-D array of integer token ids, "
                    f"got shape {array.shape} dtype {array.dtype}"
                )
            if len(array) > limit:
                raise ValueError(
                    f"window {index}: {len(array)} tokens, more than the {limit} "
                    f"that {self.prepared.name} accepts besides [CLS] and [SEP]"
                )
            checked.append(array if array.dtype == int64 else array.astype(int64))
        if checked:
            flat = np.concatenate(checked)
            if len(flat) and (flat.min() < 0 or flat.max() >= self._vocab_size):
                bad = np.flatnonzero((flat < 0) | (flat >= self._vocab_size))
                ends = np.cumsum([len(w) for w in checked])
                index = int(np.searchsorted(ends, bad[0], side="right"))
                window = checked[index]
                raise ValueError(
                    f"window {index}: token ids must lie in 0..{self._vocab_size - 1}, "
                    f"got {window.min()}..{window.max()}"
                )
        return checked

    def _pack(
        self, windows: list[TokenIds], lengths: npt.NDArray[np.int64]
    ) -> tuple[TokenIds, TokenIds]:
        """[CLS] window [SEP], right-padded to the longest window; and the matching mask."""
        special = self.special_tokens
        width = int(lengths.max()) + SPECIAL_TOKENS_PER_WINDOW
        columns = np.arange(width)
        input_ids = np.full((len(windows), width), special.pad_id, dtype=np.int64)
        body = (columns >= 1) & (columns <= lengths[:, None])
        input_ids[body] = np.concatenate(windows)  # row-major: each row's tokens in order
        input_ids[:, 0] = special.cls_id
        input_ids[np.arange(len(windows)), lengths + 1] = special.sep_id
        attention_mask = (columns < lengths[:, None] + SPECIAL_TOKENS_PER_WINDOW).astype(np.int64)
        return input_ids, attention_mask
