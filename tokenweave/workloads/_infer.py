"""The infer workload: a registered ONNX model (any modality) run on tensors, split over nodes.

A job's document is one request: its `data` is a TensorMap holding every input of the model (the
Open Inference Protocol's ModelInfer arrives as one; a dataset of tensors gives one per `.npy`
file, whose lone array, named "", feeds a model of one input, or `.npz` archive, by input name).
Each input is checked against the model's manifest — the name, the dtype, the rank, every fixed
dimension — and, for a batched model (every input and output has a first dimension of any size),
the inputs' rows are cut into tasks of at most `rows_per_task` rows (option; default: about 8
MiB of inputs, and at least the coordinator's items per task), run on whichever nodes serve the
model, and joined again in order. A model whose batch is fixed runs as one task.

A task's payload is an InferTask: the TensorMap of its rows, or, for a dataset's file, the file's
CID and the rows, which the node reads from the blocks (its own first: placement prefers the
nodes holding them; of an `.npy`, only the header and its rows) — the coordinator read the file
once, to plan. Its output is the TensorMap
of every output of the model. The coordinator checks an output against the manifest (names,
dtypes, fixed dimensions, and the task's rows along the batch) and compares two runs per
output: integers and booleans
must be equal; floats by 1 − ‖a − b‖ / max(‖a‖, ‖b‖), which must reach 1 − the model's
`max_error` (registered with it, default 1e-4: honest CPUs and GPUs differ by rounding, an fp16
model by more; a scaled or shuffled output does not pass). A task is billed
its rows, as items: `Usage.input_tokens` counts them for a model of tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenweave import tensors
from tokenweave.errors import InvalidArgumentError, clip
from tokenweave.models import DATATYPES, OnnxManifest, OnnxModelSpec, TensorSpec
from tokenweave.v1 import infer_pb2
from tokenweave.workloads._api import (
    DocumentInput,
    DocumentPlan,
    DocumentSource,
    JobPlan,
    NodeRuntime,
    PlanContext,
    TaskPlan,
    TaskRun,
    Usage,
    Workload,
)
from tokenweave.workloads._options import check_known, int_option

#: The most bytes of outputs one task may return, and one request's joined outputs may hold
#: (a model's free output dimensions are bounded only by these).
MAX_TASK_OUTPUT_BYTES = 32 * 1024 * 1024
MAX_RESULT_BYTES = 256 * 1024 * 1024
#: Bytes of inputs a task holds unless the job says how many rows (`rows_per_task`).
TASK_BYTES = 8 * 1024 * 1024
#: The most rows one task, or one request, may hold.
MAX_ROWS_PER_TASK = MAX_ROWS = 1 << 20

Arrays = dict[str, npt.NDArray[np.generic]]


def _shape_error(spec: TensorSpec, shape: tuple[int, ...]) -> str | None:
    if len(shape) != len(spec.shape):
        return f"has {len(shape)} dimensions; the model takes {len(spec.shape)}"
    for axis, (want, got) in enumerate(zip(spec.shape, shape, strict=True)):
        if want >= 0 and want != got:
            return f"has {got} at dimension {axis}; the model takes {want}"
    return None


def check_inputs(manifest: OnnxManifest, inputs: Mapping[str, Any], where: str) -> int:
    """INVALID_ARGUMENT naming the input and what is wrong, unless `inputs` are exactly the
    model's inputs with its dtypes and shapes; returns the rows (the batch) they hold."""
    for name in inputs:
        if name not in {t.name for t in manifest.inputs}:
            manifest.input(name)  # raises, listing the inputs
    rows: set[int] = set()
    for spec in manifest.inputs:
        if spec.name not in inputs:
            raise InvalidArgumentError(f"{where}: input {clip(spec.name)} is missing")
        array = inputs[spec.name]
        if tensors.dtype_name(array) != spec.dtype:
            raise InvalidArgumentError(
                f"{where}: input {clip(spec.name)} is {tensors_name(array)}; the model takes "
                f"{spec.datatype} ({spec.dtype})"
            )
        problem = _shape_error(spec, tuple(array.shape))
        if problem is None and array.ndim and array.size == 0 and array.shape[0]:
            problem = "holds no values"  # rows of nothing: a batch that costs nothing to send
        if problem is None and array.ndim and array.shape[0] > MAX_ROWS:
            problem = f"has more than {MAX_ROWS} rows"
        if problem:
            raise InvalidArgumentError(
                f"{where}: input {clip(spec.name)} of shape {list(array.shape)} {problem}"
            )
        rows.add(int(array.shape[0]) if array.ndim else 1)
    if manifest.batched and len(rows) > 1:
        raise InvalidArgumentError(
            f"{where}: the inputs' batches differ ({sorted(rows)}); every input needs the same"
        )
    batch = rows.pop() if rows else 1
    if manifest.batched and batch < 1:
        raise InvalidArgumentError(f"{where}: the inputs hold no rows")
    return batch


def tensors_name(array: npt.NDArray[np.generic]) -> str:
    name = tensors.dtype_name(array)
    return f"{DATATYPES.get(name, name)} ({name})"


def _rows_per_task(inputs: Arrays, rows: int, items_per_task: int) -> int:
    """Rows of about `TASK_BYTES` of inputs a task (at least `items_per_task`): a node receives
    the next task while it runs this one, and small rows are not sent one round trip each."""
    row_bytes = sum(a.nbytes for a in inputs.values()) // max(rows, 1)
    return max(1, items_per_task, TASK_BYTES // max(row_bytes, 1))


def inline(tensor_map: bytes) -> bytes:
    """An InferTask carrying `tensor_map` (a serialized TensorMap) as its inputs: field 1,
    length-delimited, written around the bytes as they are (no copy through a message)."""
    return b"\x0a" + _varint(len(tensor_map)) + tensor_map


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_rows(ref: infer_pb2.TensorFile, manifest: OnnxManifest, runtime: NodeRuntime) -> Arrays:
    """A dataset file's rows for a task: of an `.npy`, only its header's and those rows' bytes
    are read; of an `.npz` (compressed, perhaps), the whole archive."""

    def read(start: int, end: int) -> bytes:
        return runtime.read_bytes(DocumentSource(file=ref.cid, start=start, end=end), ref.name)

    if ref.name.endswith(".npy") and not ref.all_rows:
        rows = tensors.npy_rows(ref.name, ref.size, read, ref.row_start, ref.row_end)
        return _only_input(manifest, {"": rows}, ref.name)
    arrays = tensors.load_file(ref.name, read(0, ref.size))
    if "" in arrays:
        arrays = _only_input(manifest, arrays, ref.name)
    cut = slice(None) if ref.all_rows else slice(ref.row_start, ref.row_end)
    return {name: array[cut] for name, array in arrays.items()}


def _only_input(manifest: OnnxManifest, inputs: Arrays, where: str) -> Arrays:
    if len(inputs) != 1 or len(manifest.inputs) != 1:
        names = ", ".join(repr(t.name) for t in manifest.inputs)
        raise InvalidArgumentError(
            f"{where}: an .npy file feeds a model of one input; this one takes {names}: store "
            ".npz files with an array named after each input"
        )
    return {manifest.inputs[0].name: inputs[""]}


def _manifest(context: PlanContext, model: str) -> OnnxManifest:
    if not isinstance(context.model, OnnxModelSpec):
        raise InvalidArgumentError(
            f"model {clip(model)} is not a registered ONNX model: infer runs models added with "
            "`tokenweave models add`"
        )
    return context.model.manifest


class InferWorkload(Workload):
    name = "infer"
    options: tuple[str, ...] = ("rows_per_task",)

    def plan(
        self,
        model: str,
        documents: Sequence[DocumentInput],
        options: Mapping[str, str],
        context: PlanContext,
    ) -> JobPlan:
        manifest = _manifest(context, model)
        assert isinstance(context.model, OnnxModelSpec)
        max_error = context.model.max_error
        check_known(options, self.options, self.name)
        asked = int_option(options, "rows_per_task", 1, MAX_ROWS_PER_TASK)
        shown = asked
        outputs = [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in manifest.outputs
        ]
        docs: list[DocumentPlan] = []
        tasks: list[TaskPlan] = []
        for index, doc in enumerate(documents):
            where = f"request {index}" + (f" ({clip(doc.name)})" if doc.name else "")
            if not doc.data:
                raise InvalidArgumentError(f"{where}: infer takes tensors (a TensorMap), not text")
            inputs = tensors.unpack(doc.data, f"{where}'s inputs")
            data = doc.data
            if "" in inputs:  # an .npy file of a dataset: the model's only input
                inputs = _only_input(manifest, inputs, where)
                if doc.source is None:  # a dataset's tasks carry the file's place, not this
                    data = tensors.pack(inputs)
            rows = check_inputs(manifest, inputs, where)
            per_task = asked or _rows_per_task(inputs, rows, context.items_per_task)
            shown = shown or per_task
            cuts = range(0, rows, per_task) if manifest.batched else range(1)
            reads: tuple[int, ...]
            for start in cuts:
                end = min(rows, start + per_task) if manifest.batched else rows
                whole = not manifest.batched or (start, end) == (0, rows)
                if doc.source is not None:  # a dataset's file: the node reads it there
                    task = infer_pb2.InferTask(
                        file=infer_pb2.TensorFile(
                            cid=doc.source.file,
                            size=doc.source.end,
                            name=doc.name,
                            row_start=start,
                            row_end=end,
                            all_rows=not manifest.batched,
                        )
                    )
                    payload, reads = task.SerializeToString(), (index,)
                else:
                    part = inputs if whole else {k: v[start:end] for k, v in inputs.items()}
                    payload, reads = inline(data if whole else tensors.pack(part)), ()
                detail = {"document": index, "rows": end - start, "batched": manifest.batched,
                          "tolerance": 1.0 - max_error}  # fmt: skip
                tasks.append(
                    TaskPlan(
                        cost=max(1, end - start),
                        payload=payload,
                        detail=json.dumps({**detail, "outputs": outputs}).encode(),
                        reads=reads,
                    )
                )
            docs.append(DocumentPlan(doc.name, rows, json.dumps({"rows": rows}).encode()))
        return JobPlan(
            options={"rows_per_task": str(shown or context.items_per_task)},
            documents=tuple(docs),
            tasks=tuple(tasks),
            items=sum(d.tokens for d in docs),
        )

    def run(self, model: str, model_sha256: str, payload: bytes, runtime: NodeRuntime) -> TaskRun:
        session = runtime.onnx(model, model_sha256)
        try:
            task = infer_pb2.InferTask.FromString(payload)
        except Exception as exc:  # protobuf's DecodeError
            raise InvalidArgumentError(f"not an InferTask: {exc}") from None
        if task.HasField("file"):
            inputs = _read_rows(task.file, session.manifest, runtime)
        else:
            inputs = {
                name: tensors.from_proto(t, f"input {clip(name)}")
                for name, t in task.inputs.tensors.items()
            }
        rows = check_inputs(session.manifest, inputs, "the task")
        outputs = session.run(inputs)
        return TaskRun(tensors.pack(outputs), rows)

    def check(self, detail: bytes, output: bytes) -> None:
        task = json.loads(detail)
        if len(output) > MAX_TASK_OUTPUT_BYTES:  # a free dimension is no licence to flood
            raise InvalidArgumentError(
                f"the outputs are {len(output)} bytes; a task's may be at most "
                f"{MAX_TASK_OUTPUT_BYTES} (a model with large outputs needs fewer rows_per_task)"
            )
        arrays = tensors.unpack(output, "the outputs")
        wanted = {o["name"]: o for o in task["outputs"]}
        if set(arrays) != set(wanted):
            raise InvalidArgumentError(
                f"outputs {sorted(arrays)[:8]} are not the model's {sorted(wanted)[:8]}"
            )
        for name, array in arrays.items():
            spec = TensorSpec(name, wanted[name]["dtype"], tuple(wanted[name]["shape"]))
            if tensors.dtype_name(array) != spec.dtype:
                raise InvalidArgumentError(
                    f"output {clip(name)} is {tensors.dtype_name(array)}, not {spec.dtype}"
                )
            problem = _shape_error(spec, tuple(array.shape))
            if problem is None and task["batched"] and array.shape[0] != task["rows"]:
                problem = f"has {array.shape[0]} rows; the task has {task['rows']}"
            if problem:
                raise InvalidArgumentError(f"output {clip(name)} {problem}")

    def tolerance(self, detail: bytes) -> float | None:
        """1 − the model's largest relative error between honest runs (registered with it)."""
        value = json.loads(detail).get("tolerance")
        return None if value is None else float(value)

    def compare(self, detail: bytes, a: bytes, b: bytes) -> float:
        x, y = tensors.unpack(a), tensors.unpack(b)
        scores = [1.0]
        for name, first in x.items():
            second = y[name]
            if first.shape != second.shape:
                return -1.0
            if first.dtype.kind != "f":
                scores.append(1.0 if np.array_equal(first, second) else 0.0)
                continue
            p, q = first.astype(np.float64).ravel(), second.astype(np.float64).ravel()
            scale = max(float(np.linalg.norm(p)), float(np.linalg.norm(q)))
            if not np.isfinite(scale):
                scores.append(1.0 if np.array_equal(first, second, equal_nan=True) else 0.0)
            elif scale > 0:
                scores.append(1.0 - float(np.linalg.norm(p - q)) / scale)
        return min(scores)

    def merge(
        self, documents: Sequence[DocumentPlan], tasks: Sequence[tuple[bytes, bytes]]
    ) -> list[dict[str, npt.NDArray[np.generic]]]:
        sizes = [0] * len(documents)
        for detail, output in tasks:
            sizes[json.loads(detail)["document"]] += len(output)
        for doc, size in zip(documents, sizes, strict=True):
            if size > MAX_RESULT_BYTES:  # checked before anything is unpacked and joined
                raise InvalidArgumentError(
                    f"the outputs of request {clip(doc.name)} are {size} bytes; a request's "
                    f"may be at most {MAX_RESULT_BYTES}"
                )
        parts: list[list[Arrays]] = [[] for _ in documents]
        for detail, output in tasks:
            parts[json.loads(detail)["document"]].append(tensors.unpack(output))
        return [
            {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
            if len(pieces) > 1
            else pieces[0]
            for pieces in parts
        ]

    def meter(self, cost: int, detail: bytes, output: bytes) -> Usage:
        return Usage(input_tokens=int(json.loads(detail)["rows"]))
