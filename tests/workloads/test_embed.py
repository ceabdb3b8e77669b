"""The embedding workload on its own: plan, run (with a stand-in model), check, compare, merge."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest
from tokenizers import Tokenizer

from tokenweave import tensors
from tokenweave.errors import InvalidArgumentError
from tokenweave.models import PreparedModel, load_tokenizer
from tokenweave.v1 import embed_pb2
from tokenweave.workloads import (
    DocumentInput,
    DocumentSource,
    EmbedWorkload,
    JobPlan,
    PlanContext,
    WindowSpan,
    document_embedding,
)

TEXT = " ".join(f"word{i}" for i in range(300))


class _Model:
    """A stand-in for a node's loaded model: a vector per window from its token ids."""

    def __init__(self, prepared: PreparedModel) -> None:
        self.model = prepared
        self.tokenizer: Tokenizer = load_tokenizer(prepared)

    def embed(self, windows: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
        rows = np.stack([np.cos(np.arange(384) * (1 + int(w.sum()) % 97)) for w in windows])
        out: npt.NDArray[np.float32] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(
            np.float32
        )
        return out


class _Runtime:
    def __init__(self, prepared: PreparedModel, texts: dict[str, str]) -> None:
        self._model = _Model(prepared)
        self._texts = texts
        self.reads: list[str] = []

    def model(self, name: str, sha256: str) -> _Model:
        return self._model

    def read_document(self, source: DocumentSource, label: str) -> str:
        self.reads.append(source.file)
        return self._texts[source.file]


@pytest.fixture(scope="module")
def context(prepared: PreparedModel) -> PlanContext:
    return PlanContext(
        model=prepared.spec,
        model_sha256=prepared.sha256,
        tokenizer=load_tokenizer(prepared),
        items_per_task=3,
        defaults={"overlap": "8"},
    )


def _plan(context: PlanContext, documents: Sequence[DocumentInput], **options: str) -> JobPlan:
    return EmbedWorkload().plan("m", documents, options, context)


def test_a_plan_cuts_windows_into_tasks(context: PlanContext) -> None:
    plan = _plan(context, [DocumentInput("a", TEXT), DocumentInput("b", "short")], window="64")
    assert plan.options == {"window": "64", "overlap": "8"}
    assert plan.documents[0].tokens > 300
    assert plan.items == sum(len(json.loads(t.detail)["spans"]) for t in plan.tasks)
    first = embed_pb2.EmbedTask.FromString(plan.tasks[0].payload)
    assert len(first.windows) == 3
    assert all(len(w.token_ids) <= 62 * 4 for w in first.windows)
    assert plan.tasks[0].cost == sum(len(w.token_ids) // 4 + 2 for w in first.windows)
    assert plan.tasks[0].reads == ()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": "x"}, "not an integer"),
        ({"window": "2"}, "leaves no room"),
        ({"window": "9999"}, "above the model's maximum"),
        ({"window": "16", "overlap": "16"}, "must be smaller"),
        ({"window": "3", "overlap": "0"}, "window=3 is below the minimum of 16 tokens"),
        ({"window": "15"}, "window=15 is below the minimum of 16 tokens"),
        ({"window": "16", "overlap": "8"}, "overlap=8 is more than half .* use at most 7"),
        ({"window": "64", "overlap": "40"}, "overlap=40 is more than half"),
        ({"stride": "3"}, "unknown option"),
    ],
)
def test_bad_options_are_refused(
    context: PlanContext, options: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        _plan(context, [DocumentInput("a", TEXT)], **options)


def test_run_check_compare_and_merge(context: PlanContext, prepared: PreparedModel) -> None:
    workload = EmbedWorkload()
    plan = _plan(context, [DocumentInput("a", TEXT), DocumentInput("b", "short")], window="64")
    runtime = _Runtime(prepared, {})
    outputs = [workload.run("m", "", t.payload, runtime).output for t in plan.tasks]
    for task, output in zip(plan.tasks, outputs, strict=True):
        workload.check(task.detail, output)
        assert workload.compare(task.detail, output, output) == pytest.approx(1.0)
    merged = workload.merge(
        plan.documents, list(zip([t.detail for t in plan.tasks], outputs, strict=True))
    )
    assert [len(m["spans"]) for m in merged] == [
        sum(1 for t in plan.tasks for s in json.loads(t.detail)["spans"] if s[0] == d)
        for d in range(2)
    ]
    spans = [WindowSpan(0, int(a), int(b)) for a, b in merged[0]["spans"]]
    expected = document_embedding(spans, merged[0]["window_embeddings"].astype(np.float32))
    np.testing.assert_allclose(merged[0]["embedding"], expected)
    assert merged[1]["char_spans"].tolist() == [[0, 5]]


def test_check_refuses_what_does_not_fit(context: PlanContext, prepared: PreparedModel) -> None:
    workload = EmbedWorkload()
    task = _plan(context, [DocumentInput("a", TEXT)], window="64").tasks[0]
    good = embed_pb2.EmbedOutput.FromString(
        workload.run("m", "", task.payload, _Runtime(prepared, {})).output
    )
    matrix = tensors.from_proto(good.embeddings)

    def variant(matrix: npt.NDArray[np.generic], digest: bytes = good.tokens_sha256) -> bytes:
        return embed_pb2.EmbedOutput(
            embeddings=tensors.to_proto(matrix), tokens_sha256=digest
        ).SerializeToString()

    nan = matrix.copy()
    nan[0, 0] = np.nan
    for output, message in [
        (variant(matrix[:1]), "expected float32 3x384"),
        (variant(matrix.astype(np.float16)), "expected float32"),
        (variant(nan), "not all finite"),
        (variant(matrix, b"\0" * 32), "ran other tokens"),
        (b"\xff\xff", "not an EmbedOutput"),
    ]:
        with pytest.raises(InvalidArgumentError, match=message):
            workload.check(task.detail, output)
    flipped = matrix.copy()
    flipped[1] = -flipped[1]
    assert workload.compare(task.detail, variant(matrix), variant(flipped)) == pytest.approx(-1)


def test_a_dataset_job_sends_places_not_tokens(
    context: PlanContext, prepared: PreparedModel
) -> None:
    source = DocumentSource("bafyfile", 0, len(TEXT), "", blocks=("bafyblock",))
    plan = _plan(context, [DocumentInput("a", TEXT, source)], window="64")
    task = embed_pb2.EmbedTask.FromString(plan.tasks[0].payload)
    assert not task.windows
    assert [s.file for s in task.sources] == ["bafyfile"]
    assert plan.tasks[0].reads == (0,)
    runtime = _Runtime(prepared, {"bafyfile": TEXT})
    workload = EmbedWorkload()
    for t in plan.tasks:
        workload.check(t.detail, workload.run("m", "", t.payload, runtime).output)
    assert runtime.reads == ["bafyfile"], "a document is read once and cached"


def test_the_smallest_window_and_the_largest_overlap_are_taken(context: PlanContext) -> None:
    plan = _plan(context, [DocumentInput("a", TEXT)], window="16", overlap="7")
    assert plan.options == {"window": "16", "overlap": "7"}
    # The coordinator's default overlap is cut to half a small window, not refused.
    small = EmbedWorkload().plan(
        "m", [DocumentInput("a", TEXT)], {"window": "16"}, _with_defaults(context, "32")
    )
    assert small.options == {"window": "16", "overlap": "7"}


def _with_defaults(context: PlanContext, overlap: str) -> PlanContext:
    return PlanContext(
        context.model,
        context.model_sha256,
        context.tokenizer,
        context.items_per_task,
        {"overlap": overlap},
    )


def test_window_count_matches_the_cut(context: PlanContext) -> None:
    from tokenweave.workloads._embed import window_count
    from tokenweave.workloads._windows import WindowPlan

    for window, overlap in ((16, 0), (16, 7), (64, 8), (256, 32)):
        plan = WindowPlan.validated(window, overlap, 512)
        for length in (1, 13, 14, 15, 100, 1000, 4321):
            assert window_count(plan, length) == len(plan.spans(0, length)), (plan, length)


def test_a_document_cut_into_too_many_windows_is_refused_before_cutting(
    context: PlanContext,
) -> None:
    """1 MiB at window = 3 was 636,909 windows; even at the minimum window a result must fit."""
    long_text = "a " * 400_000  # 400,000 tokens: 57,142 windows of 16 at the largest overlap
    with pytest.raises(InvalidArgumentError, match=r"document 0 .* cut into 57,142 windows") as e:
        _plan(context, [DocumentInput("big", long_text)], window="16", overlap="7")
    assert "at most 21,845" in e.value.message
    assert "window=16" in e.value.message
    taken = _plan(context, [DocumentInput("big", long_text)], window="256", overlap="0")
    assert taken.items == 400_000 // 254 + 1


def test_a_job_of_too_many_windows_is_refused(context: PlanContext) -> None:
    docs = [DocumentInput(f"d{i}", "a " * 140_000) for i in range(16)]  # 10,000 windows each
    # Refused at the 14th document, before the other two are even tokenized.
    with pytest.raises(InvalidArgumentError, match="job would be cut into at least 140,000"):
        _plan(context, docs, window="16", overlap="0")
