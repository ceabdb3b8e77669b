"""The generation workload: each document is a prompt, each task one generation on a node.

Options (all text, as every workload's): `max_tokens` (256), `temperature` (0: greedy),
`top_p` (1), `seed` (0), `stop` (a JSON list of texts), and `format`: "text" (the document is the
prompt as is) or "chat" (the document is a JSON list of {"role", "content"} messages, rendered
with the model's own chat template). Sampling is seeded, so every honest node produces the same
tokens for a task. A verifier re-scores a result's tokens in one pass (`verification`: the task
with the result as its claim; see tokenweave.models._verify) and returns the result when it
passes, the honest generation otherwise; `compare` then judges the two token sequences. A task
whose node was lost runs again from the tokens it streamed (`resume`: they become the prefix the
next node re-scores and carries on from), so the client's stream goes on where it stopped.

A task's cost is its prompt plus max_tokens (what it may take); it is billed as prompt tokens in
and generated tokens out. Each document's result: `token_ids` (int32), `text` and
`finish_reason` (UTF-8 bytes, uint8), `prompt_tokens` (int64, one value).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenweave import tensors
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, clip
from tokenweave.models import GeneratorSpec, Message, Sampling, render_chat, verify_generation
from tokenweave.v1 import generate_pb2
from tokenweave.workloads._api import (
    DocumentInput,
    DocumentPlan,
    JobPlan,
    NodeRuntime,
    PlanContext,
    TaskPlan,
    TaskRun,
    Usage,
    Workload,
)
from tokenweave.workloads._options import check_known, float_option, int_option

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256
#: Stop texts per task, and characters in each.
MAX_STOPS = 4
MAX_STOP_CHARS = 64
FINISH_REASONS = ("stop", "length")


def utf8(text: str) -> npt.NDArray[np.uint8]:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).copy()


def _stops(options: Mapping[str, str]) -> list[str]:
    raw = options.get("stop")
    if raw is None:
        return []
    try:
        stops = json.loads(raw)
    except ValueError:
        raise InvalidArgumentError(f"stop={clip(raw)} is not a JSON list of texts") from None
    if isinstance(stops, str):
        stops = [stops]
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise InvalidArgumentError("stop must be a JSON list of non-empty texts")
    if len(stops) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stops):
        raise InvalidArgumentError(
            f"stop takes at most {MAX_STOPS} texts of at most {MAX_STOP_CHARS} characters"
        )
    return stops


def _messages(text: str, label: str) -> list[Message]:
    try:
        raw = json.loads(text)
    except ValueError:
        raise InvalidArgumentError(f"{label} is not a JSON list of chat messages") from None
    if not isinstance(raw, list) or not raw:
        raise InvalidArgumentError(f"{label}: a chat is a non-empty JSON list of messages")
    messages = []
    for i, item in enumerate(raw):
        if not (
            isinstance(item, dict)
            and isinstance(item.get("role"), str)
            and isinstance(item.get("content"), str)
        ):
            raise InvalidArgumentError(
                f"{label}: message {i} needs a string 'role' and a string 'content'"
            )
        messages.append(Message(item["role"], item["content"]))
    return messages


def output_of(output: bytes) -> generate_pb2.GenerateOutput:
    try:
        return generate_pb2.GenerateOutput.FromString(output)
    except Exception as exc:  # protobuf's DecodeError
        raise InvalidArgumentError(f"output is not a GenerateOutput: {exc}") from None


class GenerateWorkload(Workload):
    name = "generate"
    verifies_results = True
    options: tuple[str, ...] = ("max_tokens", "temperature", "top_p", "seed", "stop", "format")

    def __init__(self) -> None:
        self._longest: dict[int, int] = {}

    def _longest_token(self, context: PlanContext) -> int:
        """The longest token of the model's vocabulary, in bytes (or characters, at least)."""
        key = id(context.text_tokenizer)
        if key not in self._longest:
            vocab = context.text_tokenizer.get_vocab(with_added_tokens=True)
            self._longest[key] = max((len(t.encode()) for t in vocab), default=1)
        return self._longest[key]

    # -- coordinator --------------------------------------------------------------------------

    def plan(
        self,
        model: str,
        documents: Sequence[DocumentInput],
        options: Mapping[str, str],
        context: PlanContext,
    ) -> JobPlan:
        spec = context.model
        if not isinstance(spec, GeneratorSpec):
            raise InvalidArgumentError(f"model {clip(model)} does not generate text")
        check_known(options, self.options, self.name)
        if any(d.source is not None for d in documents):
            raise InvalidArgumentError("generate takes prompts, not a dataset")
        max_tokens = int_option(options, "max_tokens", 1, spec.context - 1)
        temperature = float_option(options, "temperature")
        top_p = float_option(options, "top_p")
        sampling = Sampling(
            temperature=0.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            seed=int_option(options, "seed", 0, 2**63 - 1) or 0,
        )
        max_tokens = max_tokens or DEFAULT_MAX_TOKENS
        stops = _stops(options)
        chat = options.get("format", "text")
        if chat not in ("text", "chat"):
            raise InvalidArgumentError(f"format={clip(chat)}: use 'text' or 'chat'")
        planned, tasks = [], []
        for i, doc in enumerate(documents):
            label = f"prompt {i}" + (f" ({clip(doc.name)})" if doc.name else "")
            prompt = doc.text
            if chat == "chat":
                prompt = render_chat(context.chat_template, _messages(doc.text, label))
            # A byte-level token holds at most `longest` bytes: a longer prompt cannot fit, and
            # is refused before tokenizing it whole (about 1 KB of memory a token).
            limit = spec.context * self._longest_token(context)
            if len(prompt.encode()) > limit:
                raise InvalidArgumentError(
                    f"{label} is {len(prompt.encode())} bytes, more than the model's context "
                    f"of {spec.context} tokens can hold ({limit} bytes; for long documents, use "
                    "`tokenweave submit ask`)"
                )
            ids = context.text_tokenizer.encode(prompt, add_special_tokens=False).ids
            if not ids:
                raise InvalidArgumentError(f"{label} has no tokens")
            if len(ids) + max_tokens > spec.context:
                raise InvalidArgumentError(
                    f"{label} is {len(ids)} tokens; with max_tokens={max_tokens} that passes "
                    f"the model's context of {spec.context} tokens (for long documents, use "
                    "`tokenweave submit ask`)"
                )
            payload = generate_pb2.GenerateTask(
                prompt_ids=tensors.to_bytes(np.asarray(ids, dtype=np.uint32), "uint32"),
                max_tokens=max_tokens,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                seed=sampling.seed,
                stop=stops,
            )
            detail = self.detail(context, len(ids), max_tokens)
            planned.append(DocumentPlan(doc.name, len(ids)))
            tasks.append(
                TaskPlan(
                    cost=len(ids) + max_tokens,
                    payload=payload.SerializeToString(),
                    detail=json.dumps(detail).encode(),
                )
            )
        filled = {
            "max_tokens": str(max_tokens),
            "temperature": repr(sampling.temperature),
            "top_p": repr(sampling.top_p),
            "seed": str(sampling.seed),
            "format": chat,
            **({"stop": json.dumps(stops)} if stops else {}),
        }
        return JobPlan(
            options=filled, documents=tuple(planned), tasks=tuple(tasks), items=len(tasks)
        )

    def detail(self, context: PlanContext, prompt_tokens: int, max_tokens: int) -> dict[str, Any]:
        """What a generation task's result is checked against (its `detail`, as JSON)."""
        return {
            "prompt_tokens": prompt_tokens,
            "max_tokens": max_tokens,
            "vocab": context.text_tokenizer.get_vocab_size(),
            # The text of max_tokens tokens can be no longer than this.
            "max_text_bytes": max_tokens * self._longest_token(context),
        }

    def check(self, detail: bytes, output: bytes) -> None:
        expected: dict[str, Any] = json.loads(detail)
        result = output_of(output)
        if len(result.text.encode()) > expected.get("max_text_bytes", len(result.text.encode())):
            raise InvalidArgumentError(
                f"the text is longer than {expected['max_tokens']} tokens can spell"
            )
        ids = tensors.from_bytes(result.token_ids, "uint32")
        if len(ids) > expected["max_tokens"]:
            raise InvalidArgumentError(
                f"{len(ids)} tokens generated, max_tokens is {expected['max_tokens']}"
            )
        if len(ids) and int(ids.max()) >= expected["vocab"]:
            raise InvalidArgumentError(f"token id {int(ids.max())} is not in the vocabulary")
        if result.finish_reason not in FINISH_REASONS:
            raise InvalidArgumentError(f"finish_reason {clip(result.finish_reason)} is unknown")
        if result.finish_reason == "length" and len(ids) != expected["max_tokens"]:
            raise InvalidArgumentError("finish_reason is length before max_tokens")

    def compare(self, detail: bytes, a: bytes, b: bytes) -> float:
        """The share of the longer output that both start with (token ids), and -1 when the
        texts differ over equal tokens: seeded generation makes the same tokens on every node."""
        left, right = output_of(a), output_of(b)
        x = tensors.from_bytes(left.token_ids, "uint32")
        y = tensors.from_bytes(right.token_ids, "uint32")
        longest = max(len(x), len(y))
        if longest == 0:
            return 1.0
        if len(x) == len(y) and (x == y).all() and left.text != right.text:
            return -1.0
        common = min(len(x), len(y))
        differs = np.flatnonzero(x[:common] != y[:common])
        prefix = int(differs[0]) if len(differs) else common
        return prefix / longest

    def merge(
        self, documents: Sequence[DocumentPlan], tasks: Sequence[tuple[bytes, bytes]]
    ) -> list[dict[str, npt.NDArray[np.generic]]]:
        results: list[dict[str, npt.NDArray[np.generic]]] = []
        for doc, (_, output) in zip(documents, tasks, strict=True):
            result = output_of(output)
            results.append(
                {
                    "token_ids": tensors.from_bytes(result.token_ids, "uint32").astype(np.int32),
                    "text": utf8(result.text),
                    "finish_reason": utf8(result.finish_reason),
                    "prompt_tokens": np.asarray([doc.tokens], dtype=np.int64),
                }
            )
        return results

    def verification(self, payload: bytes, output: bytes) -> bytes:
        """The task with the result as its claim: the verifier re-scores it in one pass."""
        task = generate_pb2.GenerateTask.FromString(payload)
        task.claim.CopyFrom(output_of(output))
        return task.SerializeToString()

    def resume(self, payload: bytes, parts: Sequence[bytes]) -> bytes:
        """The task with the tokens the lost run streamed as its prefix; the node re-scores
        them before it carries on. Parts that are not GenerateOutputs, or hold more than
        max_tokens tokens, are a liar's: the task starts over (the client is told that the
        accepted text differs from what it was streamed)."""
        task = generate_pb2.GenerateTask.FromString(payload)
        try:
            ids = [tensors.from_bytes(output_of(part).token_ids, "uint32") for part in parts]
        except InvalidArgumentError:
            return payload
        prefix = np.concatenate([np.zeros(0, np.uint32), *ids])
        if len(prefix) > task.max_tokens:
            return payload
        task.prefix_ids = tensors.to_bytes(prefix, "uint32")
        return task.SerializeToString()

    def meter(self, cost: int, detail: bytes, output: bytes) -> Usage:
        generated = len(tensors.from_bytes(output_of(output).token_ids, "uint32"))
        return Usage(input_tokens=int(json.loads(detail)["prompt_tokens"]), output_tokens=generated)

    # -- node ---------------------------------------------------------------------------------

    def run(self, model: str, model_sha256: str, payload: bytes, runtime: NodeRuntime) -> TaskRun:
        generator = runtime.generator(model, model_sha256)
        try:
            task = generate_pb2.GenerateTask.FromString(payload)
        except Exception as exc:
            raise InvalidArgumentError(f"not a GenerateTask: {exc}") from None
        prompt = tensors.from_bytes(task.prompt_ids, "uint32").astype(np.int64).tolist()
        sampling = Sampling(task.temperature, task.top_p or 1.0, task.seed)
        stop, stop_ids = list(task.stop), list(task.stop_ids)
        if task.HasField("claim"):  # a verifier: re-score another node's result
            claimed = self._tokens(task.claim.token_ids, task.max_tokens, generator)
            generation = verify_generation(
                generator,
                prompt,
                claimed,
                task.claim.finish_reason,
                task.max_tokens,
                sampling,
                stop=stop,
                stop_ids=stop_ids,
            )
            logger.info(
                "re-scored a claim of %d tokens: %s",
                len(claimed),
                "it passes" if list(generation.token_ids) == claimed else "replaced",
            )
        elif task.prefix_ids:  # carry on a lost run from the tokens it streamed, re-scored
            prefix = self._tokens(task.prefix_ids, task.max_tokens, generator)
            streamer = _Streamer(generator, runtime, stop, prefix)
            generation = verify_generation(
                generator,
                prompt,
                prefix,
                "",
                task.max_tokens,
                sampling,
                stop=stop,
                stop_ids=stop_ids,
                on_token=streamer.token,
            )
            logger.info(
                "carried on a lost run from the %d tokens it streamed: %s",
                len(prefix),
                "they pass"
                if list(generation.token_ids[: len(prefix)]) == prefix
                else "they are not the model's; generated again from the first that is not",
            )
        else:
            streamer = _Streamer(generator, runtime, stop)
            generation = generator.generate(
                prompt,
                task.max_tokens,
                sampling,
                stop=stop,
                stop_ids=stop_ids,
                on_token=streamer.token,
            )
        output = generate_pb2.GenerateOutput(
            token_ids=tensors.to_bytes(np.asarray(generation.token_ids, np.uint32), "uint32"),
            finish_reason=generation.finish_reason,
            text=generation.text,
        )
        return TaskRun(output.SerializeToString(), len(prompt) + len(generation.token_ids))

    @staticmethod
    def _tokens(data: bytes, max_tokens: int, generator: Any) -> list[int]:
        """Token ids another node sent (a claim, a lost run's prefix), checked."""
        ids = tensors.from_bytes(data, "uint32").astype(np.int64)
        if len(ids) > max_tokens or (len(ids) and ids.max() >= generator.prepared.config.vocab):
            raise InvalidArgumentError(
                "the task's claimed or streamed tokens are more than max_tokens or not the "
                "model's tokens"
            )
        return list(ids.tolist())


class _Streamer:
    """Reports each new token with the text it completes, as a GenerateOutput part. Text is
    held back while it could still be the start of a stop text (the result is cut there) or ends
    in an unfinished UTF-8 character, so the parts always add up to a prefix of the result.
    `prefix`: the tokens a lost run streamed, which this run carries on from (their parts were
    sent when their text was safe, so it is what was sent)."""

    def __init__(
        self, generator: Any, runtime: NodeRuntime, stops: Sequence[str], prefix: Sequence[int] = ()
    ) -> None:
        self._generator = generator
        self._runtime = runtime
        self._stops = list(stops)
        self._hold = max((len(s) for s in stops), default=1) - 1
        self._tokens: list[int] = list(prefix)
        self._pending: list[int] = []
        self._sent = self._safe_text() if prefix else ""

    def _safe_text(self) -> str:
        """The text of the tokens so far that no later token can change."""
        text = str(self._generator.decode(self._tokens))
        found = [i for stop in self._stops if (i := text.find(stop)) >= 0]
        if found:  # the generation ends here, cut before the stop text
            return text[: min(found)]
        return text[: max(0, len(text) - self._hold)]

    def token(self, token: int) -> None:
        if self._runtime.cancelled():  # within a step of the coordinator taking it back
            raise FailedPreconditionError("the task was taken back; generation stopped")
        self._tokens.append(token)
        self._pending.append(token)
        safe = self._safe_text()
        if safe.endswith("\ufffd") or not safe.startswith(self._sent):
            return
        part = generate_pb2.GenerateOutput(
            token_ids=tensors.to_bytes(np.asarray(self._pending, np.uint32), "uint32"),
            text=safe[len(self._sent) :],
        )
        self._runtime.report(part.SerializeToString())
        self._sent = safe
        self._pending = []
