"""The workload interface: everything that differs between kinds of work.

The engine (leases, placement, backups, verification, ledger, settlement, storage) moves tasks
whose payloads and outputs are opaque bytes. A workload gives those bytes their meaning, in six
steps, each a plain function of its inputs:

    plan       (coordinator)  a job → documents and tasks, each with its cost in model tokens
    run        (node)         a task's payload → output bytes and the model tokens it took
    check      (coordinator)  an output is well-formed for its task (shape, finiteness, proofs)
    compare    (coordinator)  two outputs of one task: similarity in [-1, 1] (1 = the same)
    next_stage (coordinator)  every task accepted → more tasks built on their outputs, or none
    merge      (coordinator)  every task's output → each document's result, as named tensors
    meter      (coordinator)  an accepted output → the tokens billed (input and output)

Most workloads have one stage (`next_stage` returns nothing). A staged one (map, then reduce
levels) plans its next stage from the accepted outputs of the stages before; the engine stores
those tasks with the job and runs them like any other, and merges once a stage plans nothing.

A task's `detail` is the workload's own record of it, kept by the coordinator and never sent to
nodes (what a result is checked against). Implementations live in their own modules and are
registered once (see `tokenweave.workloads.register`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
from tokenizers import Tokenizer

from tokenweave.errors import InvalidArgumentError
from tokenweave.models import (
    Generator,
    GeneratorSpec,
    ModelSpec,
    OnnxManifest,
    OnnxModelSpec,
    PreparedModel,
)


@dataclass(frozen=True, slots=True)
class DocumentSource:
    """Where a dataset job's document lives: bytes [start, end) of UnixFS file `file`; a JSON
    Lines record whose `text_field` is the text, or (empty field) the text itself."""

    file: str
    start: int
    end: int
    text_field: str = ""
    #: Every block a reader fetches for it (for placement near the data).
    blocks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DocumentInput:
    name: str
    text: str
    source: DocumentSource | None = None
    #: A binary input instead of a text (the infer workload's tensors, a TensorMap).
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What the coordinator lends a plan: the model and its own settings."""

    model: ModelSpec | GeneratorSpec | OnnxModelSpec
    model_sha256: str
    #: A text model's tokenizer (None for a model of tensors).
    tokenizer: Tokenizer | None
    #: Work items (e.g. windows) grouped into one task (coordinator --windows-per-shard).
    items_per_task: int
    #: Coordinator defaults for options the job leaves out (e.g. {"overlap": "32"}).
    defaults: Mapping[str, str]
    #: A generator's chat template (Jinja), for chat prompts.
    chat_template: str = ""

    @property
    def text_tokenizer(self) -> Tokenizer:
        """The tokenizer of a text model; INVALID_ARGUMENT for a model of tensors."""
        if self.tokenizer is None:
            raise InvalidArgumentError(
                f"model {self.model.name} takes tensors, not text: run it with the infer workload"
            )
        return self.tokenizer


@dataclass(frozen=True, slots=True)
class TaskPlan:
    #: Model tokens the task takes: placement, deadlines and speeds are measured in them.
    cost: int
    #: Sent to the node as is.
    payload: bytes
    #: The workload's own record of the task; never sent to a node.
    detail: bytes
    #: Dataset documents (indices) the node reads itself; () when the payload carries the input.
    reads: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DocumentPlan:
    name: str
    #: The document's tokens (no special tokens).
    tokens: int
    #: The workload's own record of the document (e.g. token offsets in the text).
    detail: bytes = b""


@dataclass(frozen=True, slots=True)
class JobPlan:
    #: The options the job runs with, defaults filled in (shown back to the developer).
    options: Mapping[str, str]
    documents: tuple[DocumentPlan, ...]
    tasks: tuple[TaskPlan, ...]
    #: Work items (e.g. windows) over all tasks.
    items: int

    @property
    def tokens(self) -> int:
        return sum(d.tokens for d in self.documents)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens billed for one task, priced per model."""

    input_tokens: int
    output_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class TaskRun:
    """What a node's run of a task produced."""

    output: bytes
    #: Model tokens the run took (as the node counts them).
    tokens: int


class LoadedModel(Protocol):
    """A model a node has loaded (the node's runner)."""

    @property
    def model(self) -> PreparedModel: ...

    @property
    def tokenizer(self) -> Tokenizer: ...

    def embed(self, windows: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        """Unit-length vectors, one row per window of token ids (special tokens excluded)."""
        ...


class OnnxRunner(Protocol):
    """A registered ONNX model a node has loaded."""

    manifest: OnnxManifest

    def run(
        self, inputs: Mapping[str, npt.NDArray[np.generic]]
    ) -> dict[str, npt.NDArray[np.generic]]:
        """Every output of the model for these inputs."""
        ...


class NodeRuntime(Protocol):
    """What a node lends a task: its loaded model and its dataset reader."""

    def model(self, name: str, sha256: str) -> LoadedModel:
        """The loaded model; FailedPreconditionError when the node lacks it or its hash."""
        ...

    def generator(self, name: str, sha256: str) -> Generator:
        """The loaded text generator; FailedPreconditionError when the node lacks it."""
        ...

    def onnx(self, name: str, sha256: str) -> OnnxRunner:
        """A registered ONNX model the node serves; FailedPreconditionError when it does not."""
        ...

    def read_document(self, source: DocumentSource, label: str) -> str:
        """A dataset document's text, from this node's blocks or its peers'. Worker thread."""
        ...

    def read_bytes(self, source: DocumentSource, label: str) -> bytes:
        """A dataset file's bytes [start, end), from this node's blocks or its peers' (every
        block checked against its CID). Worker thread."""
        ...

    def report(self, output: bytes) -> None:
        """Send part of the task's output now (what it added since the last part), for the
        job's client to see while the task runs; the returned output stays the whole.
        Worker thread; never blocks."""
        ...

    def cancelled(self) -> bool:
        """Whether the coordinator took the task back (its job was cancelled, or another node's
        result was accepted): a long run checks it and stops early. Worker thread."""
        ...


class Workload(ABC):
    """One kind of work. Instances are stateless and shared; every method may run in a worker
    thread."""

    #: The name jobs and nodes use for it ("embed").
    name: str
    #: Whether a verifier checks a result (`verification`) rather than running the task again:
    #: then its copy is placed once the first result is in, not beside the first run.
    verifies_results: bool = False

    @abstractmethod
    def plan(
        self,
        model: str,
        documents: Sequence[DocumentInput],
        options: Mapping[str, str],
        context: PlanContext,
    ) -> JobPlan:
        """Validate a job (InvalidArgumentError naming what is wrong) and cut it into tasks."""

    @abstractmethod
    def run(self, model: str, model_sha256: str, payload: bytes, runtime: NodeRuntime) -> TaskRun:
        """Run one task on a node."""

    @abstractmethod
    def check(self, detail: bytes, output: bytes) -> None:
        """InvalidArgumentError unless `output` is a well-formed result of the task."""

    @abstractmethod
    def compare(self, detail: bytes, a: bytes, b: bytes) -> float:
        """Similarity of two checked outputs of one task, in [-1, 1]; 1 when they are equal.
        Two outputs agree when it reaches the coordinator's --verify-tolerance."""

    @abstractmethod
    def merge(
        self, documents: Sequence[DocumentPlan], tasks: Sequence[tuple[bytes, bytes]]
    ) -> list[dict[str, npt.NDArray[np.generic]]]:
        """Each document's result from every task's (detail, accepted output), in task order."""

    def verification(self, payload: bytes, output: bytes) -> bytes:
        """The payload a verifier runs to check `output` (a checked result of the task with
        `payload`); its own output must compare equal to `output` when `output` is right, and
        be the task's right output otherwise. By default: the task itself, run again."""
        return payload

    def tolerance(self, detail: bytes) -> float | None:
        """The similarity two outputs of the task must reach to agree, when the task has its
        own (a registered model's); None: the coordinator's --verify-tolerance."""
        return None

    def resume(self, payload: bytes, parts: Sequence[bytes]) -> bytes:
        """The payload for a run that carries on where a lost run stopped: `parts` are what
        that run reported (`NodeRuntime.report`) and its job's client already holds, unchecked
        (they may come from a liar). By default: the task starts over."""
        return payload

    def next_stage(
        self,
        documents: Sequence[DocumentPlan],
        tasks: Sequence[tuple[bytes, bytes]],
        context: PlanContext,
    ) -> tuple[TaskPlan, ...]:
        """Once every task so far is accepted: the next stage's tasks, built from their
        (detail, accepted output) in task order; () when the job is complete (the default).
        The tasks carry their input in the payload (they read no dataset)."""
        return ()

    def meter(self, cost: int, detail: bytes, output: bytes) -> Usage:
        """Tokens billed for an accepted output; by default the task's planned cost."""
        return Usage(input_tokens=cost)
