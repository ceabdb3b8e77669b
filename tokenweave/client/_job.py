"""Job and EmbedJob: a submitted job, followed and collected through its `Client`."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import grpc

from tokenweave.client._channel import translate as _translate
from tokenweave.client._convert import (
    DocumentEmbedding,
    DocumentOutput,
    JobInfo,
    JobStatus,
    document_embedding,
)
from tokenweave.errors import (
    FailedPreconditionError,
    JobFailedError,
    ResourceExhaustedError,
    UnavailableError,
)

if TYPE_CHECKING:
    from tokenweave.client._client import Client

#: How often a job is read when the coordinator has no watch stream to spare.
POLL_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class EmbedResult:
    job: JobInfo
    documents: tuple[DocumentEmbedding, ...]


class GenerationParams(TypedDict, total=False):
    """How a generation runs (each left out takes the coordinator's default)."""

    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop: Sequence[str]


def generation_options(params: GenerationParams) -> dict[str, str]:
    """The generate workload's options, as text (the coordinator checks every value)."""
    options = {name: str(value) for name, value in params.items() if name != "stop"}
    stop = params.get("stop", ())
    if stop:
        options["stop"] = json.dumps([stop] if isinstance(stop, str) else list(stop))
    return options


@dataclass(frozen=True, slots=True)
class Completion:
    """One prompt's generated text."""

    text: str
    token_ids: tuple[int, ...]
    #: "stop" (an end-of-turn token or a stop text) or "length" (max_tokens reached).
    finish_reason: str
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


def completion(output: DocumentOutput) -> Completion:
    values = output.outputs
    return Completion(
        text=bytes(values["text"]).decode("utf-8"),
        token_ids=tuple(int(t) for t in values["token_ids"]),
        finish_reason=bytes(values["finish_reason"]).decode("utf-8"),
        prompt_tokens=int(values["prompt_tokens"][0]),
    )


@dataclass(frozen=True, slots=True)
class Source:
    """Characters [start, end) of document `document` (`name`) that an answer drew on."""

    document: int
    name: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Answer:
    """An ask job's answer and the windows of the documents it drew on."""

    text: str
    #: "stop", "length" (max_tokens reached) or "unanswered" (no window bore on the question).
    finish_reason: str
    sources: tuple[Source, ...]
    job: JobInfo


class Job:
    """A submitted job: follow it with `watch()`, collect it with `outputs()`."""

    def __init__(self, client: Client, info: JobInfo) -> None:
        self._client = client
        self.info = info

    @property
    def id(self) -> str:
        return self.info.job_id

    def refresh(self) -> JobInfo:
        self.info = self._client._get(self.id)
        return self.info

    def watch(self, *, reconnect_for: float = 60.0) -> Iterator[JobInfo]:
        """Yield the job on every change until it finishes.

        A dropped stream (coordinator restarting, network blip) is resumed transparently from
        the last event seen, retrying with jittered backoff for up to `reconnect_for` seconds.
        """
        after = 0
        delay = 0.25
        deadline: float | None = None
        while True:
            try:
                for info in self._client._watch(self.id, after):
                    after = info.sequence
                    deadline = None
                    delay = 0.25
                    self.info = info
                    yield info
                return
            except grpc.RpcError as exc:
                error = _translate(exc)
                if isinstance(error, ResourceExhaustedError):
                    # The coordinator's cap on watch streams: follow the job by polling instead.
                    yield from self._poll()
                    return
                if not isinstance(error, UnavailableError):
                    raise error from exc
                deadline = deadline or time.monotonic() + reconnect_for
                if time.monotonic() > deadline:
                    raise error from exc
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 5.0)

    def _poll(self) -> Iterator[JobInfo]:
        """`watch` by GetJob every `POLL_INTERVAL_S`: each change, until the job finishes."""
        last = None
        while True:
            info = self.refresh()
            seen = (info.state, info.shards_done, info.tokens_processed)
            if seen != last:
                last = seen
                yield info
            if info.state.finished:
                return
            time.sleep(POLL_INTERVAL_S)

    def wait(self) -> JobInfo:
        for _ in self.watch():
            pass
        return self.info

    def outputs(self) -> list[DocumentOutput]:
        """Wait for the job to finish and return each document's result; raises if it did not
        succeed."""
        info = self.wait()
        if info.status is not JobStatus.SUCCEEDED:
            reason = f": {info.error}" if info.error else ""
            raise JobFailedError(f"job {self.id} {info.status}{reason}")
        return list(self._client._results(self.id))

    def cancel(self) -> JobInfo:
        self.info = self._client.cancel(self.id)
        return self.info


class EmbedJob(Job):
    """An embedding job: `result()` gives each document's window and document embeddings."""

    def result(self) -> EmbedResult:
        """Wait for the job to finish and return its embeddings; raises if it did not succeed."""
        if self.info.workload != "embed":
            raise FailedPreconditionError(
                f"job {self.id} is a {self.info.workload!r} job, not an embedding: use outputs()"
            )
        documents = tuple(document_embedding(d) for d in self.outputs())
        return EmbedResult(job=self.info, documents=documents)


class GenerateJob(Job):
    """A generation job: `completions()` gives each prompt's text, `completion()` the first."""

    def completions(self) -> list[Completion]:
        """Wait for the job to finish; raises if it did not succeed."""
        if self.info.workload != "generate":
            raise FailedPreconditionError(
                f"job {self.id} is a {self.info.workload!r} job, not a generation: use outputs()"
            )
        return [completion(d) for d in self.outputs()]

    def completion(self) -> Completion:
        return self.completions()[0]

    def stream(self, prompt: int = 0) -> Iterator[str]:
        """The text of prompt `prompt`'s completion, piece by piece as the node generates it,
        then whatever the accepted result adds (nothing, for an honest node). Parts are the
        node's, unverified: when the accepted result does not continue what was streamed,
        FailedPreconditionError says so (`completion()` has the verified text)."""
        from tokenweave.v1 import generate_pb2

        streamed = ""
        for task, part in self._client._stream_output(self.id):
            if task == prompt:
                piece = generate_pb2.GenerateOutput.FromString(part).text
                streamed += piece
                if piece:
                    yield piece
        final = self.completions()[prompt].text
        if not final.startswith(streamed):
            raise FailedPreconditionError(
                f"job {self.id}: the accepted text differs from the text streamed by the "
                "node that ran it first; completion() has the accepted one"
            )
        if len(final) > len(streamed):
            yield final[len(streamed) :]


class AskJob(Job):
    """A question over long documents (map-reduce): `answer()` gives the answer and its sources."""

    def answer(self) -> Answer:
        """Wait for the job to finish and return its answer; raises if it did not succeed."""
        if self.info.workload != "ask":
            raise FailedPreconditionError(
                f"job {self.id} is a {self.info.workload!r} job, not a question: use outputs()"
            )
        outputs = self.outputs()
        first = outputs[0].outputs
        sources = tuple(
            Source(doc.index, doc.name, int(start), int(end))
            for doc in outputs
            for start, end in doc.outputs["spans"]
        )
        return Answer(
            text=bytes(first["answer"]).decode("utf-8"),
            finish_reason=bytes(first["finish_reason"]).decode("utf-8"),
            sources=sources,
            job=self.info,
        )


@dataclass(frozen=True, slots=True)
class MapResult:
    """A map job's outputs, stored on the network as a new dataset."""

    #: Root CID of the dataset of outputs: one `.npz` per input file, at the same path.
    dataset: str
    #: The input files (their paths), in order.
    files: tuple[str, ...]
    job: JobInfo


class MapJob(Job):
    """A registered ONNX model over a dataset of tensors: `result()` stores the outputs as a
    new dataset and gives its CID."""

    def result(self) -> MapResult:
        """Wait for the job; store each input file's outputs as `.npz` (same path) in a new
        dataset (`put`, replicated like any upload); raises if the job did not succeed."""
        import tempfile

        from tokenweave import tensors

        outputs = self.outputs()
        with tempfile.TemporaryDirectory(prefix="tokenweave-map-") as tmp:
            folder = Path(tmp) / self.id
            for doc in outputs:
                path = folder / (doc.name.rsplit(".", 1)[0] + ".npz")
                if folder not in path.resolve().parents:  # names come from the dataset
                    raise FailedPreconditionError(f"output path {doc.name!r} leaves the folder")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(tensors.npz_bytes(doc.outputs))
            stored = self._client.put(folder, name=f"{self.id}-outputs")
        return MapResult(stored.root, tuple(d.name for d in outputs), self.info)
