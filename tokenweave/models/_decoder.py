"""DecoderSession: a llama decoder on ONNX Runtime, token by token with a key-value cache.

`prefill` runs a prompt (or any text) in one call and keeps its keys and values; `step` runs the
one token just chosen against them, so a generated token costs one position, not the whole
context. `score` re-reads a prompt and a continuation in one pass and returns the logits at every
continuation position (teacher forcing): how a verifier checks generated text without generating.
`generate` is the loop: greedy at temperature 0, else seeded sampling with top-p.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from tokenweave.errors import InvalidArgumentError
from tokenweave.models._gguf import LlamaConfig
from tokenweave.models._session import CUDA_PROVIDER, Provider, default_providers

Logits = npt.NDArray[np.float32]


@dataclass
class KvCache:
    """Keys and values of the tokens run so far, one pair of tensors per layer: numpy arrays
    on the CPU, ONNX Runtime values on a GPU (where they stay between steps)."""

    tensors: dict[str, npt.NDArray[np.floating] | ort.OrtValue]
    length: int = 0


@dataclass(frozen=True, slots=True)
class Sampling:
    """How the next token is chosen: temperature 0 is greedy (argmax, ties to the lowest id)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.temperature >= 0 and np.isfinite(self.temperature)):
            raise InvalidArgumentError(f"temperature={self.temperature} must be 0 or more")
        if not 0 < self.top_p <= 1:
            raise InvalidArgumentError(f"top_p={self.top_p} must be in (0, 1]")


#: Greedy decoding: the default.
GREEDY = Sampling()


@dataclass
class Sampler:
    """Chooses tokens from logits by `Sampling`; seeded, so a run is reproducible."""

    sampling: Sampling
    _rng: np.random.Generator = field(init=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.sampling.seed)

    def choose(self, logits: Logits) -> int:
        return self.draw(logits)[0]

    def draw(self, logits: Logits) -> tuple[int, float, npt.NDArray[np.float64]]:
        """The token, with the uniform draw u and the cumulative distribution it was chosen
        by (the token is the first whose cumulative probability passes u); greedy: u = -1."""
        if self.sampling.temperature == 0:
            return int(np.argmax(logits)), -1.0, np.zeros(0)
        scaled = logits.astype(np.float64) / self.sampling.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        if self.sampling.top_p < 1:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            keep = order[: int(np.searchsorted(cumulative, self.sampling.top_p)) + 1]
            kept = np.zeros_like(probs)
            kept[keep] = probs[keep]
            probs = kept / kept.sum()
        cdf = np.cumsum(probs)
        cdf /= cdf[-1]
        u = float(self._rng.random())
        return int(cdf.searchsorted(u, side="right")), u, cdf


@dataclass(frozen=True, slots=True)
class StepTiming:
    prefill_tokens: int
    prefill_s: float
    decode_tokens: int
    decode_s: float


class DecoderSession:
    def __init__(
        self,
        onnx_path: Path,
        config: LlamaConfig,
        *,
        providers: Sequence[Provider] | None = None,
        threads: int = 0,
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.config = config
        self._session = ort.InferenceSession(
            str(onnx_path), options, providers=list(providers or default_providers())
        )
        self.provider: str = self._session.get_providers()[0]
        self._layers = [
            (f"past_key.{n}", f"past_value.{n}", f"present_key.{n}", f"present_value.{n}")
            for n in range(config.layers)
        ]
        self._outputs = ["logits"] + [name for layer in self._layers for name in layer[2:]]
        past = {i.name: i.type for i in self._session.get_inputs()}["past_key.0"]
        self._cache_dtype = np.float16 if past == "tensor(float16)" else np.float32
        #: On CUDA the cache stays on the device, ("cuda", id): each step's present keys and
        #: values are bound there and given back as the next step's past; only the logits
        #: come back. None: plain numpy arrays (the CPU).
        self.cache_device: tuple[str, int] | None = None
        if self.provider == CUDA_PROVIDER:
            options = self._session.get_provider_options().get(CUDA_PROVIDER, {})
            self.cache_device = ("cuda", int(options.get("device_id", 0)))

    def new_cache(self) -> KvCache:
        c = self.config
        empty = np.zeros((1, c.kv_heads, 0, c.head_dim), self._cache_dtype)
        return KvCache({name: empty for layer in self._layers for name in layer[:2]})

    def _run(
        self, ids: Sequence[int], cache: KvCache, logits_from: int, all_logits: bool = True
    ) -> Logits:
        """Run `ids` after the cache's tokens; the cache grows by them. Returns the logits of
        positions `logits_from`.. of `ids`, [positions, vocab]: every one exact, or (not
        `all_logits`) the best 64 of each row exact and the rest approximate (greedy)."""
        total = cache.length + len(ids)
        if total > self.config.context:
            raise InvalidArgumentError(
                f"{total} tokens pass the model's context of {self.config.context}"
            )
        feed: dict[str, npt.NDArray[np.generic]] = {
            "input_ids": np.asarray([ids], dtype=np.int64),
            "seqlens_k": np.asarray([total - 1], dtype=np.int32),
            "total_sequence_length": np.asarray(total, dtype=np.int32),
            "logits_from": np.asarray([logits_from], dtype=np.int64),
            "all_logits": np.asarray(all_logits),
        }
        if self.cache_device is None:
            outputs = self._session.run(self._outputs, {**feed, **cache.tensors})
            logits: Logits = outputs[0][0]
        else:
            outputs = self._run_on_device(feed, cache)
            logits = outputs[0].numpy()[0]
        for (past_key, past_value, _, _), key, value in zip(
            self._layers, outputs[1::2], outputs[2::2], strict=True
        ):
            cache.tensors[past_key] = key
            cache.tensors[past_value] = value
        cache.length = total
        return logits

    def _run_on_device(
        self, feed: dict[str, npt.NDArray[np.generic]], cache: KvCache
    ) -> list[ort.OrtValue]:
        """One run with the cache read from and written to `cache_device` (I/O binding)."""
        assert self.cache_device is not None
        device, device_id = self.cache_device
        binding = self._session.io_binding()
        for name, array in feed.items():
            binding.bind_cpu_input(name, array)
        for name, value in cache.tensors.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:  # the empty cache of a new sequence
                binding.bind_cpu_input(name, value)
        binding.bind_output("logits", "cpu")
        for name in self._outputs[1:]:
            binding.bind_output(name, device, device_id)
        self._session.run_with_iobinding(binding)
        outputs: list[ort.OrtValue] = binding.get_outputs()
        return outputs

    def prefill(self, ids: Sequence[int], cache: KvCache, all_logits: bool = True) -> Logits:
        """Run a prompt; the logits after its last token."""
        if not ids:
            raise InvalidArgumentError("the prompt has no tokens")
        last: Logits = self._run(ids, cache, len(ids) - 1, all_logits)[0]
        return last

    def step(self, token: int, cache: KvCache, all_logits: bool = True) -> Logits:
        """Run one token; the logits after it."""
        logits: Logits = self._run([token], cache, 0, all_logits)[0]
        return logits

    def score(self, prompt: Sequence[int], continuation: Sequence[int]) -> Logits:
        """Logits at every position from the prompt's last token on, teacher-forced, in one
        pass: row i predicts continuation[i] (and the last row what would follow)."""
        if not prompt:
            raise InvalidArgumentError("the prompt has no tokens")
        ids = [*prompt, *continuation]
        return self._run(ids, self.new_cache(), len(prompt) - 1)

    def generate(
        self,
        prompt: Sequence[int],
        max_tokens: int,
        sampling: Sampling = GREEDY,
        stop_ids: frozenset[int] = frozenset(),
        sampler: Sampler | None = None,
    ) -> Iterator[int]:
        """Tokens as they are chosen, until `max_tokens` or a stop token (not yielded).
        `sampler`: one that has already chosen earlier tokens (a generation carried on)."""
        if max_tokens < 1:
            raise InvalidArgumentError(f"max_tokens={max_tokens} must be at least 1")
        if len(prompt) + max_tokens > self.config.context:
            raise InvalidArgumentError(
                f"the prompt's {len(prompt)} tokens and max_tokens={max_tokens} pass the "
                f"model's context of {self.config.context} tokens"
            )
        sampler = sampler or Sampler(sampling)
        drawn = sampler.sampling.temperature > 0  # from every logit; greedy: the best's
        cache = self.new_cache()
        logits = self.prefill(prompt, cache, drawn)
        for produced in range(max_tokens):
            token = sampler.choose(logits)
            if token in stop_ids:
                return
            yield token
            if produced + 1 < max_tokens:
                logits = self.step(token, cache, drawn)

    def timed(self, prompt: Sequence[int], tokens: int) -> StepTiming:
        """Prefill `prompt`, then decode `tokens` greedily: the time of each phase."""
        cache = self.new_cache()
        started = time.perf_counter()
        logits = self.prefill(prompt, cache, all_logits=False)
        prefilled = time.perf_counter()
        for _ in range(tokens):
            logits = self.step(int(np.argmax(logits)), cache, all_logits=False)
        done = time.perf_counter()
        return StepTiming(len(prompt), prefilled - started, tokens, done - prefilled)
