"""The embedding workload: long documents cut into overlapping windows, one vector per window,
and a document vector (the token-weighted mean of its windows).

A task is a run of consecutive windows (an `EmbedTask`: their token ids inline, or, for a dataset
job, where the node reads each document and the token ranges to run). Its output is an
`EmbedOutput`: the [windows, dim] float32 matrix and the sha256 of the token ids the node ran,
which the coordinator checks against the ids it planned.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

from tokenweave import tensors
from tokenweave.errors import InvalidArgumentError, clip
from tokenweave.models import (
    SPECIAL_TOKENS_PER_WINDOW,
    GeneratorSpec,
    ModelSpec,
    encode_document,
    tokenize,
    windows_digest,
)
from tokenweave.v1 import embed_pb2
from tokenweave.workloads._api import (
    DocumentInput,
    DocumentPlan,
    DocumentSource,
    JobPlan,
    LoadedModel,
    NodeRuntime,
    PlanContext,
    TaskPlan,
    TaskRun,
    Workload,
)
from tokenweave.workloads._options import check_known, int_option
from tokenweave.workloads._windows import (
    WindowPlan,
    WindowSpan,
    document_embedding,
    group_into_shards,
)

#: Dataset documents whose token ids a node keeps for its next tasks (a long one spans many).
DOCUMENT_CACHE = 16
#: Coordinator default for `overlap` when neither the job nor the coordinator sets one.
DEFAULT_OVERLAP = 32
#: The shortest window a job may ask for, [CLS] and [SEP] included (window = 3 with overlap 0
#: once turned 1 MiB of text into 636,909 windows); neighbours share at most half a window.
MIN_WINDOW = 16
#: Floats of window embeddings one document's result may hold (32 MiB of float32: half
#: the coordinator's 64 MiB message limit; 21,845 windows for a 384-dimension model).
MAX_DOCUMENT_FLOATS = 8 * 1024 * 1024
#: Windows one job may plan in all (each is a task row's worth of work and an output vector).
MAX_JOB_WINDOWS = 131_072


def _embedder(context: PlanContext) -> ModelSpec:
    if isinstance(context.model, GeneratorSpec):
        raise InvalidArgumentError(
            f"model {context.model.name!r} generates text; embed needs an embedding model"
        )
    if not isinstance(context.model, ModelSpec):
        raise InvalidArgumentError(
            f"model {context.model.name!r} takes tensors, not text; embed needs an embedding model"
        )
    return context.model


def _label(index: int, name: str) -> str:
    return f"document {index}" + (f" ({clip(name)})" if name else "")


class EmbedWorkload(Workload):
    name = "embed"
    options = ("window", "overlap")

    def __init__(self) -> None:
        self._documents: OrderedDict[tuple[str, int, int, str, str], npt.NDArray[np.int64]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    # -- coordinator --------------------------------------------------------------------------

    def _window_plan(self, options: Mapping[str, str], context: PlanContext) -> WindowPlan:
        spec = _embedder(context)
        check_known(options, self.options, self.name)
        window = int_option(options, "window")
        if window is None:
            window = spec.default_window
        overlap = int_option(options, "overlap")
        if overlap is None:
            overlap = int_option(context.defaults, "overlap")
            overlap = DEFAULT_OVERLAP if overlap is None else overlap
            overlap = min(overlap, max(window - SPECIAL_TOKENS_PER_WINDOW, 0) // 2)
        plan = WindowPlan.validated(window, overlap, spec.max_tokens)
        if window < MIN_WINDOW:
            raise InvalidArgumentError(
                f"window={window} is below the minimum of {MIN_WINDOW} tokens"
            )
        if overlap > plan.content // 2:
            raise InvalidArgumentError(
                f"overlap={overlap} is more than half the window's {plan.content} text tokens "
                f"(window={window} minus [CLS] and [SEP]); use at most {plan.content // 2}"
            )
        return plan

    def plan(
        self,
        model: str,
        documents: Sequence[DocumentInput],
        options: Mapping[str, str],
        context: PlanContext,
    ) -> JobPlan:
        plan = self._window_plan(options, context)
        dim = _embedder(context).dim
        counted = _WindowCount(plan, dim)
        ids: list[npt.NDArray[np.uint32]] = []
        planned: list[DocumentPlan] = []
        spans: list[WindowSpan] = []
        for i, doc in enumerate(documents):
            # One document at a time, a chunk at a time (`tokenize`): memory holds 12 bytes a
            # token of the job and one chunk's tokenizer objects, never a whole document's
            # (about 0.9 KB a token: 2 GB for 8 MiB, bench_plan_memory.py).
            tokens = tokenize(context.text_tokenizer, doc.text)
            doc_ids, offsets = tokens.ids, tokens.offsets
            if len(doc_ids) == 0:
                raise InvalidArgumentError(
                    f"{_label(i, doc.name)} has no tokens after tokenization"
                )
            counted.add(_label(i, doc.name), len(doc_ids))
            ids.append(doc_ids)
            planned.append(
                DocumentPlan(doc.name, len(doc_ids), tensors.to_bytes(offsets, "uint32"))
            )
            spans.extend(plan.spans(i, len(doc_ids)))
        tasks = []
        for shard in group_into_shards(spans, context.items_per_task):
            windows = [ids[w.document][w.start : w.end] for w in shard.windows]
            needed = sorted({w.document for w in shard.windows})
            sources = [(d, s) for d in needed if (s := documents[d].source) is not None]
            if sources:  # a dataset job: the node reads the documents itself
                payload = embed_pb2.EmbedTask(
                    sources=[_source_proto(d, s) for d, s in sources],
                    spans=[
                        embed_pb2.DocumentSpan(document=w.document, start=w.start, end=w.end)
                        for w in shard.windows
                    ],
                )
            else:
                payload = embed_pb2.EmbedTask(
                    windows=[
                        embed_pb2.Window(token_ids=tensors.to_bytes(w, "uint32")) for w in windows
                    ]
                )
            detail = {
                "spans": [[w.document, w.start, w.end] for w in shard.windows],
                "dim": dim,
                "tokens_sha256": windows_digest(windows),
            }
            tasks.append(
                TaskPlan(
                    cost=shard.model_tokens,
                    payload=payload.SerializeToString(),
                    detail=json.dumps(detail).encode(),
                    reads=tuple(d for d, _ in sources),
                )
            )
        return JobPlan(
            options={"window": str(plan.window), "overlap": str(plan.overlap)},
            documents=tuple(planned),
            tasks=tuple(tasks),
            items=len(spans),
        )

    def check(self, detail: bytes, output: bytes) -> None:
        expected = json.loads(detail)
        rows, dim = len(expected["spans"]), int(expected["dim"])
        result = _output(output)
        ran = result.tokens_sha256.hex()
        if ran != expected["tokens_sha256"]:
            raise InvalidArgumentError(
                f"the node ran other tokens than the task's (token digest {clip(ran, 16)}, "
                f"expected {expected['tokens_sha256'][:16]}…)"
            )
        matrix = tensors.from_proto(result.embeddings, "embeddings")
        if matrix.dtype != np.float32 or matrix.shape != (rows, dim):
            raise InvalidArgumentError(
                f"result is {matrix.dtype} {'x'.join(map(str, matrix.shape))}, "
                f"expected float32 {rows}x{dim}"
            )
        if not np.isfinite(matrix).all():
            raise InvalidArgumentError("embeddings are not all finite")

    def compare(self, detail: bytes, a: bytes, b: bytes) -> float:
        """The lowest per-window cosine between the two outputs."""
        left, right = _matrix(a), _matrix(b)
        if left.shape != right.shape:
            return -1.0
        return float(window_cosines(left, right).min()) if len(left) else 1.0

    def merge(
        self, documents: Sequence[DocumentPlan], tasks: Sequence[tuple[bytes, bytes]]
    ) -> list[dict[str, npt.NDArray[np.generic]]]:
        spans: dict[int, list[WindowSpan]] = defaultdict(list)
        rows: dict[int, list[npt.NDArray[np.float32]]] = defaultdict(list)
        for detail, output in tasks:
            matrix = _matrix(output)
            for (doc, start, end), row in zip(json.loads(detail)["spans"], matrix, strict=True):
                spans[doc].append(WindowSpan(doc, start, end))
                rows[doc].append(row)
        results: list[dict[str, npt.NDArray[np.generic]]] = []
        for i, doc in enumerate(documents):
            offsets = tensors.from_bytes(doc.detail, "uint32").reshape(-1, 2)
            matrix = np.stack(rows[i]).astype(np.float32)
            token_spans = np.array([(s.start, s.end) for s in spans[i]], dtype=np.uint32)
            char_spans = np.array(
                [(offsets[s.start, 0], offsets[s.end - 1, 1]) for s in spans[i]], dtype=np.uint32
            )
            results.append(
                {
                    "embedding": document_embedding(spans[i], matrix),
                    "window_embeddings": matrix,
                    "spans": token_spans.reshape(-1, 2),
                    "char_spans": char_spans.reshape(-1, 2),
                }
            )
        return results

    # -- node ---------------------------------------------------------------------------------

    def run(self, model: str, model_sha256: str, payload: bytes, runtime: NodeRuntime) -> TaskRun:
        loaded = runtime.model(model, model_sha256)
        try:
            task = embed_pb2.EmbedTask.FromString(payload)
        except Exception as exc:
            raise InvalidArgumentError(f"not an EmbedTask: {exc}") from None
        if task.spans:
            windows = self._dataset_windows(task, loaded, runtime)
        else:
            windows = [
                tensors.from_bytes(w.token_ids, "uint32").astype(np.int64) for w in task.windows
            ]
        matrix = loaded.embed(windows)
        output = embed_pb2.EmbedOutput(
            embeddings=tensors.to_proto(matrix, "float32"),
            tokens_sha256=bytes.fromhex(windows_digest(windows)),
        )
        tokens = sum(len(w) + SPECIAL_TOKENS_PER_WINDOW for w in windows)
        return TaskRun(output.SerializeToString(), tokens)

    def _dataset_windows(
        self, task: embed_pb2.EmbedTask, loaded: LoadedModel, runtime: NodeRuntime
    ) -> list[npt.NDArray[np.int64]]:
        """Read the task's documents (through the node: its own blocks first, then peers'),
        tokenize them and cut the assigned windows."""
        documents: dict[int, npt.NDArray[np.int64]] = {}
        for source in task.sources:
            key = (source.file, source.start, source.end, source.text_field, loaded.model.sha256)
            with self._lock:
                ids = self._documents.get(key)
                if ids is not None:
                    self._documents.move_to_end(key)
            if ids is None:
                where = DocumentSource(source.file, source.start, source.end, source.text_field)
                text = runtime.read_document(where, f"document {source.document}")
                ids = encode_document(loaded.tokenizer, text)
                with self._lock:
                    self._documents[key] = ids
                    while len(self._documents) > DOCUMENT_CACHE:
                        self._documents.popitem(last=False)
            documents[source.document] = ids
        missing = {s.document for s in task.spans} - set(documents)
        if missing:
            raise InvalidArgumentError(f"no source for documents {sorted(missing)}")
        return [documents[s.document][s.start : s.end] for s in task.spans]


def _source_proto(document: int, source: DocumentSource) -> embed_pb2.DocumentSource:
    return embed_pb2.DocumentSource(
        document=document,
        file=source.file,
        start=source.start,
        end=source.end,
        text_field=source.text_field,
    )


def _output(output: bytes) -> embed_pb2.EmbedOutput:
    try:
        return embed_pb2.EmbedOutput.FromString(output)
    except Exception as exc:  # protobuf's DecodeError
        raise InvalidArgumentError(f"output is not an EmbedOutput: {exc}") from None


def _matrix(output: bytes) -> npt.NDArray[np.float32]:
    matrix: npt.NDArray[np.float32] = tensors.from_proto(_output(output).embeddings).astype(
        np.float32, copy=False
    )
    return matrix


def window_count(plan: WindowPlan, length: int) -> int:
    """How many windows `plan.spans` cuts `length` tokens into, without cutting them."""
    return 1 + max(0, -(-(length - plan.content) // plan.stride))


class _WindowCount:
    """Refuses, before a document's windows are cut, a document or a job whose windows would
    not fit the bounds."""

    def __init__(self, plan: WindowPlan, dim: int) -> None:
        self._plan = plan
        self._per_document = max(1, MAX_DOCUMENT_FLOATS // max(dim, 1))
        self.total = 0

    def add(self, label: str, length: int) -> None:
        plan = self._plan
        count = window_count(plan, length)
        if count > self._per_document:
            raise InvalidArgumentError(
                f"{label} would be cut into {count:,} windows at window={plan.window} and "
                f"overlap={plan.overlap}; a document's result holds at most "
                f"{self._per_document:,}: raise window, lower overlap or split the document"
            )
        self.total += count
        if self.total > MAX_JOB_WINDOWS:
            raise InvalidArgumentError(
                f"the job would be cut into at least {self.total:,} windows at "
                f"window={plan.window} and overlap={plan.overlap}; a job holds at most "
                f"{MAX_JOB_WINDOWS:,}: raise window, lower overlap or send fewer documents"
            )


def window_cosines(
    a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]
) -> npt.NDArray[np.float64]:
    """Cosine similarity of each row of `a` with the same row of `b`."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    cosines: npt.NDArray[np.float64] = np.einsum("ij,ij->i", a64, b64)
    return cosines / np.where(norms == 0, 1.0, norms)
