"""The infer workload on a real ONNX Runtime session: a batch cut into tasks and joined again
exactly, inputs checked against the manifest, outputs checked and compared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from tokenweave import tensors
from tokenweave.errors import InvalidArgumentError
from tokenweave.models import (
    OnnxModelSpec,
    OnnxSession,
    inspect_onnx,
    store_model,
    text_direction_model,
)
from tokenweave.models import stored_model_path as stored
from tokenweave.workloads import DocumentInput, PlanContext, get

from .. import onnx_models

WORKLOAD = get("infer")
MODEL = onnx_models.classifier()


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> OnnxSession:
    cache = tmp_path_factory.mktemp("models")
    sha256 = store_model(cache, MODEL)
    return OnnxSession(stored(cache, sha256), sha256, threads=1)


def context(items_per_task: int = 4) -> PlanContext:
    spec = OnnxModelSpec("classifier", inspect_onnx(MODEL))
    return PlanContext(spec, "", None, items_per_task, {})


class _Runtime:
    def __init__(self, session: OnnxSession) -> None:
        self._session = session

    def onnx(self, name: str, sha256: str) -> OnnxSession:
        return self._session


def request(**arrays: np.ndarray) -> DocumentInput:
    return DocumentInput("r", "", data=tensors.pack(arrays))


def test_a_batch_is_cut_into_tasks_run_and_joined_in_order(session: OnnxSession) -> None:
    images = np.random.default_rng(1).normal(size=(10, 1, 8, 8)).astype(np.float32)
    plan = WORKLOAD.plan("classifier", [request(image=images)], {"rows_per_task": "4"}, context())
    assert [t.cost for t in plan.tasks] == [4, 4, 2]
    assert plan.options == {"rows_per_task": "4"}
    assert plan.items == 10
    runtime = _Runtime(session)
    done = []
    for task in plan.tasks:
        run = WORKLOAD.run("classifier", session.sha256, task.payload, runtime)  # type: ignore[arg-type]
        WORKLOAD.check(task.detail, run.output)
        assert WORKLOAD.compare(task.detail, run.output, run.output) == 1.0
        assert WORKLOAD.meter(task.cost, task.detail, run.output).input_tokens == task.cost
        done.append((task.detail, run.output))
    [result] = WORKLOAD.merge(plan.documents, done)
    bare = ort.InferenceSession(MODEL).run(["probs"], {"image": images})[0]
    np.testing.assert_array_equal(result["probs"], bare)


def test_outputs_that_are_not_the_models_are_refused_or_disagree(session: OnnxSession) -> None:
    images = np.random.default_rng(2).normal(size=(3, 1, 8, 8)).astype(np.float32)
    [task] = WORKLOAD.plan("classifier", [request(image=images)], {}, context()).tasks
    honest = WORKLOAD.run("classifier", "", task.payload, _Runtime(session)).output  # type: ignore[arg-type]
    probs = tensors.unpack(honest)["probs"]
    for forged, message in [
        ({"other": probs}, "not the model's"),
        ({"probs": probs.astype(np.float16)}, "is float16, not float32"),
        ({"probs": probs[:2]}, "has 2 rows; the task has 3"),
        ({"probs": np.ones((3, 4), np.float32)}, "has 4 at dimension 1"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            WORKLOAD.check(task.detail, tensors.pack(forged))
    nearly = tensors.pack({"probs": probs + 1e-7})
    assert WORKLOAD.compare(task.detail, honest, nearly) > 0.9999
    for cheat in (probs * 2, probs[::-1].copy(), np.full_like(probs, 1 / 3)):
        assert WORKLOAD.compare(task.detail, honest, tensors.pack({"probs": cheat})) < 0.99


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"pixels": np.ones((1, 1, 8, 8), np.float32)}, "the model has no input 'pixels'"),
        ({}, "not text"),
        ({"image": np.ones((1, 1, 8, 8), np.int64)}, "input 'image' is INT64 .int64.; the model"),
        ({"image": np.ones((1, 8, 8), np.float32)}, "has 3 dimensions; the model takes 4"),
        ({"image": np.ones((1, 3, 8, 8), np.float32)}, "has 3 at dimension 1; the model takes 1"),
        ({"image": np.ones((0, 1, 8, 8), np.float32)}, "the inputs hold no rows"),
    ],
    ids=["wrong-name", "nothing", "wrong-dtype", "wrong-rank", "wrong-dim", "no-rows"],
)
def test_bad_inputs_name_the_input_and_what_is_wrong(
    inputs: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        WORKLOAD.plan("classifier", [request(**inputs)], {}, context())


def test_bad_requests_and_options_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="not a TensorMap"):
        WORKLOAD.plan("classifier", [DocumentInput("r", "", data=b"\xff\x01")], {}, context())
    with pytest.raises(InvalidArgumentError, match="unknown option"):
        WORKLOAD.plan("classifier", [request(image=np.ones((1, 1, 8, 8), np.float32))],
                      {"window": "3"}, context())  # fmt: skip
    text = PlanContext(context().model, "", None, 4, {})
    with pytest.raises(InvalidArgumentError, match="takes tensors"):
        WORKLOAD.plan("classifier", [DocumentInput("t", "some text")], {}, text)
    assert json.loads(WORKLOAD.plan(
        "classifier", [request(image=np.ones((2, 1, 8, 8), np.float32))],
        {"rows_per_task": "1"}, context()).tasks[1].detail)["rows"] == 1  # fmt: skip


def test_a_text_workload_refuses_a_model_of_tensors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="takes tensors, not text"):
        get("embed").plan("classifier", [DocumentInput("t", "some text")], {}, context())


def test_a_billion_rows_of_nothing_are_refused_before_planning() -> None:
    """Free dimensions of size 0 make a huge batch of no bytes: it would plan millions of tasks."""
    spec = OnnxModelSpec("text-direction", inspect_onnx(text_direction_model().read_bytes()))
    empty = np.ones((10**9, 3, 0, 192), np.float32)
    with pytest.raises(InvalidArgumentError, match="holds no values"):
        WORKLOAD.plan("text-direction", [request(x=empty)], {}, PlanContext(spec, "", None, 4, {}))


def test_a_models_own_error_bound_is_the_tasks_tolerance() -> None:
    images = np.ones((2, 1, 8, 8), np.float32)
    [task] = WORKLOAD.plan("classifier", [request(image=images)], {}, context()).tasks
    assert WORKLOAD.tolerance(task.detail) == pytest.approx(1 - 1e-4), "the default"
    loose = OnnxModelSpec("classifier", inspect_onnx(MODEL), max_error=0.01)
    [task] = WORKLOAD.plan("classifier", [request(image=images)], {},
                           PlanContext(loose, "", None, 4, {})).tasks  # fmt: skip
    assert WORKLOAD.tolerance(task.detail) == pytest.approx(0.99)
    assert get("embed").tolerance(b"{}") is None, "other workloads: the coordinator's"


def test_a_datasets_file_is_read_by_the_node_and_cut_into_rows(session: OnnxSession) -> None:
    """A .npy file of a dataset: the coordinator plans from its arrays, the task carries only
    its place and rows, and the node reads the bytes itself."""
    import io

    from tokenweave.workloads import DocumentSource

    images = np.random.default_rng(6).normal(size=(6, 1, 8, 8)).astype(np.float32)
    buffer = io.BytesIO()
    np.save(buffer, images)
    data = buffer.getvalue()
    source = DocumentSource("bafyfile", 0, len(data), blocks=("bafyfile",))
    doc = DocumentInput("crops/a.npy", "", source, data=tensors.pack({"": images}))
    plan = WORKLOAD.plan("classifier", [doc], {"rows_per_task": "4"}, context())
    assert [t.reads for t in plan.tasks] == [(0,), (0,)]
    assert all(len(t.payload) < 100 for t in plan.tasks), "a place, not the tensors"

    reads: list[tuple[int, int]] = []

    class Reading(_Runtime):
        def read_bytes(self, where: DocumentSource, label: str) -> bytes:
            assert (where.file, label) == ("bafyfile", "crops/a.npy")
            reads.append((where.start, where.end))
            return data[where.start : where.end]

    done = []
    for task in plan.tasks:
        run = WORKLOAD.run("classifier", session.sha256, task.payload, Reading(session))  # type: ignore[arg-type]
        WORKLOAD.check(task.detail, run.output)
        done.append((task.detail, run.output))
    [result] = WORKLOAD.merge(plan.documents, done)
    bare = ort.InferenceSession(MODEL).run(["probs"], {"image": images})[0]
    np.testing.assert_array_equal(result["probs"], bare)
    row = 8 * 8 * 4
    header = len(data) - 6 * row
    assert reads[1::2] == [(header, header + 4 * row), (header + 4 * row, len(data))], (
        "each task reads the header, then only its rows"
    )


def test_tasks_hold_about_eight_mebibytes_of_rows_unless_told() -> None:
    small = np.ones((100, 1, 8, 8), np.float32)  # 256 bytes a row: one task
    plan = WORKLOAD.plan("classifier", [request(image=small)], {}, context(items_per_task=16))
    assert [t.cost for t in plan.tasks] == [100]
    td = OnnxModelSpec("td", inspect_onnx(text_direction_model().read_bytes()))
    crops = np.zeros((200, 3, 48, 192), np.float32)  # 110,592 bytes a row: 75 rows a task
    plan = WORKLOAD.plan("td", [request(x=crops)], {}, PlanContext(td, "", None, 16, {}))
    assert [t.cost for t in plan.tasks] == [75, 75, 50]
    assert plan.options == {"rows_per_task": "75"}


def test_a_model_of_strings_runs_on_byte_strings(tmp_path: Path) -> None:
    data = onnx_models.strings()
    sha256 = store_model(tmp_path, data)
    strings = OnnxSession(stored(tmp_path, sha256), sha256, threads=1)
    spec = OnnxModelSpec("echo", inspect_onnx(data))
    texts = tensors.strings_array([b"one", b"two", b"three"], (3,))
    plan = WORKLOAD.plan("echo", [request(text=texts)], {"rows_per_task": "2"},
                         PlanContext(spec, "", None, 4, {}))  # fmt: skip
    done = []
    for task in plan.tasks:
        run = WORKLOAD.run("echo", sha256, task.payload, _Runtime(strings))  # type: ignore[arg-type]
        WORKLOAD.check(task.detail, run.output)
        assert WORKLOAD.compare(task.detail, run.output, run.output) == 1.0
        done.append((task.detail, run.output))
    [result] = WORKLOAD.merge(plan.documents, done)
    assert result["same"].tolist() == [b"one", b"two", b"three"]
    other = tensors.pack({"same": tensors.strings_array([b"one", b"TWO"], (2,))})
    assert WORKLOAD.compare(plan.tasks[0].detail, done[0][1], other) == 0.0
    with pytest.raises(InvalidArgumentError, match="input 'text' is FP32"):
        WORKLOAD.plan("echo", [request(text=np.ones(2, np.float32))], {},
                      PlanContext(spec, "", None, 4, {}))  # fmt: skip


def test_outputs_past_their_bounds_are_refused(
    session: OnnxSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node cannot flood the coordinator through a free output dimension: a task's outputs
    and a request's joined outputs are bounded (the bounds made small here)."""
    from tokenweave.workloads import _infer

    images = np.ones((4, 1, 8, 8), np.float32)
    plan = WORKLOAD.plan("classifier", [request(image=images)], {"rows_per_task": "2"}, context())
    outputs = [
        WORKLOAD.run("classifier", "", t.payload, _Runtime(session)).output  # type: ignore[arg-type]
        for t in plan.tasks
    ]
    monkeypatch.setattr(_infer, "MAX_TASK_OUTPUT_BYTES", len(outputs[0]) - 1)
    with pytest.raises(InvalidArgumentError, match="a task's may be at most"):
        WORKLOAD.check(plan.tasks[0].detail, outputs[0])
    monkeypatch.setattr(_infer, "MAX_RESULT_BYTES", len(outputs[0]) + len(outputs[1]) - 1)
    done = [(t.detail, o) for t, o in zip(plan.tasks, outputs, strict=True)]
    with pytest.raises(InvalidArgumentError, match="outputs of request 'r' are"):
        WORKLOAD.merge(plan.documents, done)
