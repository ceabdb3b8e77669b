"""The SDK's own logic, against a scripted JobService in process.

The server here is a fake on purpose: what is under test is what `Client` sends, how it decodes
what comes back, how `watch()` resumes, and how gRPC statuses become `tokenweave.errors`. Each
test scripts the replies it needs on `Scripted` and reads back the requests the server received.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message

from tokenweave import tensors
from tokenweave.client import Client, EmbedJob, JobInfo, JobStatus, NodeInfo
from tokenweave.errors import (
    FailedPreconditionError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    TokenweaveError,
    UnauthenticatedError,
    UnavailableError,
)
from tokenweave.types import Gpu, Hardware, JobState, ModelOffer, NodeShare
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc

Context = grpc.ServicerContext
CREATED = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
FINISHED = dt.datetime(2026, 1, 2, 3, 9, 0, tzinfo=dt.UTC)


def job_message(
    job_id: str = "job-1",
    state: jobs_pb2.JobState.ValueType = jobs_pb2.JOB_STATE_QUEUED,
    **fields: Any,
) -> jobs_pb2.Job:
    message = jobs_pb2.Job(job_id=job_id, state=state, model="all-minilm-l6-v2", **fields)
    message.created_at.FromDatetime(CREATED)
    return message


@dataclass
class WatchAttempt:
    """One WatchJob call: the events it streams, then the status it ends with (None: OK)."""

    events: list[jobs_pb2.WatchJobResponse]
    abort: tuple[grpc.StatusCode, str] | None = None


class Scripted(jobs_pb2_grpc.JobServiceServicer):
    """A JobService that records every request and answers what the test scripted.

    One instance serves the whole module (grpc binds a servicer's methods when it is added);
    `reset()` gives each test a clean script.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests: list[tuple[str, Message]] = []
        #: When set, every call ends with this status and message.
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.job = job_message()
        self.jobs: list[jobs_pb2.Job] = []
        self.nodes: list[jobs_pb2.NodeInfo] = []
        #: One per WatchJob call, in order.
        self.watches: list[WatchAttempt] = []
        self.results: list[jobs_pb2.DocumentResult] = []
        #: When set, GetJobResult ends with this status after its results.
        self.results_abort: tuple[grpc.StatusCode, str] | None = None

    def _record(self, method: str, request: Message, context: Context) -> None:
        with self.lock:
            self.requests.append((method, request))
        if self.abort is not None:
            context.abort(*self.abort)

    def sent(self, method: str) -> list[Any]:
        """The requests received by `method`, in order."""
        with self.lock:
            return [r for m, r in self.requests if m == method]

    def SubmitJob(  # noqa: N802
        self, request: jobs_pb2.SubmitJobRequest, context: Context
    ) -> jobs_pb2.SubmitJobResponse:
        self._record("SubmitJob", request, context)
        return jobs_pb2.SubmitJobResponse(job=self.job)

    def GetJob(  # noqa: N802
        self, request: jobs_pb2.GetJobRequest, context: Context
    ) -> jobs_pb2.GetJobResponse:
        self._record("GetJob", request, context)
        return jobs_pb2.GetJobResponse(job=self.job)

    def WatchJob(  # noqa: N802
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> Iterator[jobs_pb2.WatchJobResponse]:
        self._record("WatchJob", request, context)
        with self.lock:
            attempt = self.watches.pop(0)
        yield from attempt.events
        if attempt.abort is not None:
            context.abort(*attempt.abort)

    def GetJobResult(  # noqa: N802
        self, request: jobs_pb2.GetJobResultRequest, context: Context
    ) -> Iterator[jobs_pb2.GetJobResultResponse]:
        self._record("GetJobResult", request, context)
        for document in self.results:
            yield jobs_pb2.GetJobResultResponse(document=document)
        if self.results_abort is not None:
            context.abort(*self.results_abort)

    def CancelJob(  # noqa: N802
        self, request: jobs_pb2.CancelJobRequest, context: Context
    ) -> jobs_pb2.CancelJobResponse:
        self._record("CancelJob", request, context)
        return jobs_pb2.CancelJobResponse(job=self.job)

    def ListJobs(  # noqa: N802
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        self._record("ListJobs", request, context)
        return jobs_pb2.ListJobsResponse(jobs=self.jobs)

    def ListNodes(  # noqa: N802
        self, request: jobs_pb2.ListNodesRequest, context: Context
    ) -> jobs_pb2.ListNodesResponse:
        self._record("ListNodes", request, context)
        return jobs_pb2.ListNodesResponse(nodes=self.nodes)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[Scripted, str]]:
    servicer = Scripted()
    grpc_server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, grpc_server)
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    grpc_server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        grpc_server.stop(None).wait()


@pytest.fixture
def scripted(server: tuple[Scripted, str]) -> Scripted:
    server[0].reset()
    return server[0]


@pytest.fixture
def client(server: tuple[Scripted, str], scripted: Scripted) -> Iterator[Client]:
    with Client(server[1], timeout=10.0) as c:
        yield c


def event(
    sequence: int, state: jobs_pb2.JobState.ValueType, **fields: Any
) -> jobs_pb2.WatchJobResponse:
    return jobs_pb2.WatchJobResponse(
        sequence=sequence, job=job_message(state=state, **fields), tokens_per_second=12.5
    )


def embed_result(index: int, name: str, windows: int, dim: int) -> jobs_pb2.DocumentResult:
    """An "embed" document result made of tensors only, as the coordinator sends it."""
    rng = np.random.default_rng(index)
    spans = np.array([[i * 10, i * 10 + 16] for i in range(windows)], dtype=np.uint32)
    window_embeddings = rng.standard_normal((windows, dim)).astype(np.float32)
    embedding = window_embeddings.mean(axis=0)
    embedding /= np.linalg.norm(embedding)
    document = jobs_pb2.DocumentResult(index=index, name=name, tokens=windows * 10 + 6)
    document.outputs["spans"].CopyFrom(tensors.to_proto(spans))
    document.outputs["char_spans"].CopyFrom(tensors.to_proto(spans * 4))
    document.outputs["window_embeddings"].CopyFrom(tensors.to_proto(window_embeddings))
    document.outputs["embedding"].CopyFrom(tensors.to_proto(embedding))
    return document


# -- embed ------------------------------------------------------------------------------------


def test_embed_names_bare_texts_by_index_and_uses_the_default_model(
    client: Client, scripted: Scripted
) -> None:
    job = client.embed(["first text", ("notes.txt", "second text"), "third text"])

    (request,) = scripted.sent("SubmitJob")
    assert [(d.name, d.text) for d in request.documents] == [
        ("doc-0", "first text"),
        ("notes.txt", "second text"),
        ("doc-2", "third text"),
    ]
    assert request.model == "all-minilm-l6-v2"
    assert request.workload == ""  # the coordinator's default: "embed"
    assert not request.HasField("window")
    assert not request.HasField("overlap")
    assert not request.options
    assert isinstance(job, EmbedJob)
    assert job.id == "job-1"
    assert job.info.state is JobState.QUEUED


def test_embed_sends_window_and_overlap_in_their_typed_fields(
    client: Client, scripted: Scripted
) -> None:
    client.embed(["text"], model="other-model", window=128, overlap=0)

    (request,) = scripted.sent("SubmitJob")
    assert request.model == "other-model"
    assert request.HasField("window")
    assert request.window == 128
    assert request.HasField("overlap")  # 0 is sent: it is not "unset"
    assert request.overlap == 0
    assert not request.options


@pytest.mark.parametrize(
    ("window", "overlap", "named"),
    [(-1, None, "window=-1"), (None, -5, "overlap=-5"), (2**32, None, "window=4294967296")],
)
def test_embed_refuses_out_of_range_window_or_overlap_without_a_call(
    client: Client, scripted: Scripted, window: int | None, overlap: int | None, named: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        client.embed(["text"], window=window, overlap=overlap)
    assert scripted.requests == []


def test_jobs_refuses_a_negative_limit_without_a_call(client: Client, scripted: Scripted) -> None:
    with pytest.raises(InvalidArgumentError, match="limit=-1"):
        client.jobs(limit=-1)
    assert scripted.requests == []


# -- submit and outputs -----------------------------------------------------------------------


def test_submit_sends_the_workload_and_its_options_as_text(
    client: Client, scripted: Scripted
) -> None:
    scripted.job = job_message(workload="count", options={"every": "3"})

    job = client.submit(
        "count", ["a b c", ("b", "d e")], options={"every": 3, "scale": 0.5, "mode": "fast"}
    )

    (request,) = scripted.sent("SubmitJob")
    assert request.workload == "count"
    assert request.model == "all-minilm-l6-v2"
    assert dict(request.options) == {"every": "3", "scale": "0.5", "mode": "fast"}
    assert [(d.name, d.text) for d in request.documents] == [("doc-0", "a b c"), ("b", "d e")]
    assert not request.HasField("window")
    assert job.info.workload == "count"
    assert job.info.options == {"every": "3"}


def test_outputs_waits_then_decodes_each_documents_tensors(
    client: Client, scripted: Scripted
) -> None:
    scripted.watches = [WatchAttempt([event(1, jobs_pb2.JOB_STATE_SUCCEEDED)])]
    counts = jobs_pb2.DocumentResult(index=0, name="doc-0", tokens=3)
    counts.outputs["counts"].CopyFrom(tensors.to_proto(np.array([[1, 2], [3, 4]], np.int64)))
    counts.outputs["mask"].CopyFrom(tensors.to_proto(np.array([True, False, True])))
    other = jobs_pb2.DocumentResult(index=1, name="b", tokens=2)
    other.outputs["scores"].CopyFrom(tensors.to_proto(np.array([0.5, 1.5], np.float16)))
    scripted.results = [counts, other]

    outputs = client.submit("count", ["a b c", ("b", "d e")]).outputs()

    assert [(o.index, o.name, o.tokens) for o in outputs] == [(0, "doc-0", 3), (1, "b", 2)]
    assert sorted(outputs[0].outputs) == ["counts", "mask"]
    got = outputs[0].outputs["counts"]
    assert got.dtype == np.int64
    assert got.shape == (2, 2)
    np.testing.assert_array_equal(got, [[1, 2], [3, 4]])
    assert outputs[0].outputs["mask"].dtype == np.bool_
    np.testing.assert_array_equal(outputs[0].outputs["mask"], [True, False, True])
    assert outputs[1].outputs["scores"].dtype == np.float16
    np.testing.assert_array_equal(outputs[1].outputs["scores"], [0.5, 1.5])
    (request,) = scripted.sent("GetJobResult")
    assert request.job_id == "job-1"
    assert request.tensors is True


def test_outputs_refuses_a_malformed_tensor(client: Client, scripted: Scripted) -> None:
    scripted.watches = [WatchAttempt([event(1, jobs_pb2.JOB_STATE_SUCCEEDED)])]
    bad = jobs_pb2.DocumentResult(index=0, name="doc-0")
    bad.outputs["x"].CopyFrom(tensors.to_proto(np.zeros(3, np.float32)))
    bad.outputs["x"].shape[:] = [4]  # 12 bytes cannot be 4 float32 values
    scripted.results = [bad]

    with pytest.raises(InvalidArgumentError, match="result 'x'"):
        client.submit("count", ["a"]).outputs()


# -- EmbedJob.result --------------------------------------------------------------------------


def test_result_gives_each_documents_embedding_arrays(client: Client, scripted: Scripted) -> None:
    scripted.watches = [
        WatchAttempt(
            [
                event(1, jobs_pb2.JOB_STATE_RUNNING, shards_total=2, shards_done=1),
                event(2, jobs_pb2.JOB_STATE_SUCCEEDED, shards_total=2, shards_done=2),
            ]
        )
    ]
    sent = [embed_result(0, "doc-0", windows=3, dim=8), embed_result(1, "b", windows=1, dim=8)]
    scripted.results = sent

    result = client.embed(["one", ("b", "two")]).result()

    assert result.job.state is JobState.SUCCEEDED
    assert result.job.sequence == 2
    assert [(d.index, d.name, d.tokens) for d in result.documents] == [
        (0, "doc-0", 36),
        (1, "b", 16),
    ]
    for doc, message in zip(result.documents, sent, strict=True):
        windows = message.outputs["spans"].shape[0]
        assert doc.spans.dtype == np.int64
        assert doc.spans.shape == (windows, 2)
        np.testing.assert_array_equal(doc.spans, tensors.from_proto(message.outputs["spans"]))
        assert doc.char_spans.dtype == np.int64
        assert doc.char_spans.shape == (windows, 2)
        np.testing.assert_array_equal(doc.char_spans, doc.spans * 4)
        assert doc.window_embeddings.dtype == np.float32
        assert doc.window_embeddings.shape == (windows, 8)
        np.testing.assert_array_equal(
            doc.window_embeddings, tensors.from_proto(message.outputs["window_embeddings"])
        )
        assert doc.embedding.dtype == np.float32
        assert doc.embedding.shape == (8,)
        assert np.linalg.norm(doc.embedding) == pytest.approx(1.0, abs=1e-6)
    assert scripted.sent("GetJobResult")[0].tensors is True


def test_result_of_a_failed_job_raises_with_the_jobs_error(
    client: Client, scripted: Scripted
) -> None:
    scripted.watches = [
        WatchAttempt([event(3, jobs_pb2.JOB_STATE_FAILED, error="shard 2 failed 3 times")])
    ]

    job = client.embed(["text"])
    with pytest.raises(FailedPreconditionError, match="shard 2 failed 3 times") as caught:
        job.result()

    assert "job-1" in caught.value.message
    assert "FAILED" in caught.value.message
    assert job.info.state is JobState.FAILED
    assert scripted.sent("GetJobResult") == []  # no results asked for


def test_result_of_a_cancelled_job_raises(client: Client, scripted: Scripted) -> None:
    scripted.watches = [WatchAttempt([event(1, jobs_pb2.JOB_STATE_CANCELLED)])]

    with pytest.raises(FailedPreconditionError, match="CANCELLED"):
        client.embed(["text"]).result()


# -- watch ------------------------------------------------------------------------------------


def test_watch_yields_every_event_in_order(client: Client, scripted: Scripted) -> None:
    scripted.watches = [
        WatchAttempt(
            [
                event(1, jobs_pb2.JOB_STATE_QUEUED),
                event(2, jobs_pb2.JOB_STATE_RUNNING, tokens_processed=100),
                event(5, jobs_pb2.JOB_STATE_SUCCEEDED, tokens_processed=300),
            ]
        )
    ]
    job = client.job("job-1")

    seen = list(job.watch())

    assert [(i.sequence, i.state, i.tokens_processed) for i in seen] == [
        (1, JobState.QUEUED, 0),
        (2, JobState.RUNNING, 100),
        (5, JobState.SUCCEEDED, 300),
    ]
    assert all(i.tokens_per_second == 12.5 for i in seen)
    assert job.info == seen[-1]
    (request,) = scripted.sent("WatchJob")
    assert (request.job_id, request.after_sequence) == ("job-1", 0)


def test_watch_resumes_a_dropped_stream_after_the_last_sequence_seen(
    client: Client, scripted: Scripted
) -> None:
    dropped = (grpc.StatusCode.UNAVAILABLE, "coordinator restarting")
    scripted.watches = [
        WatchAttempt(
            [event(1, jobs_pb2.JOB_STATE_QUEUED), event(4, jobs_pb2.JOB_STATE_RUNNING)], dropped
        ),
        WatchAttempt([], dropped),  # dropped again before any event
        WatchAttempt(
            [event(6, jobs_pb2.JOB_STATE_RUNNING), event(7, jobs_pb2.JOB_STATE_SUCCEEDED)]
        ),
    ]

    seen = list(client.job("job-1").watch())

    assert [i.sequence for i in seen] == [1, 4, 6, 7]
    assert seen[-1].state is JobState.SUCCEEDED
    assert [r.after_sequence for r in scripted.sent("WatchJob")] == [0, 4, 4]
    assert {r.job_id for r in scripted.sent("WatchJob")} == {"job-1"}


def test_watch_gives_up_on_unavailable_after_reconnect_for(
    client: Client, scripted: Scripted
) -> None:
    down = (grpc.StatusCode.UNAVAILABLE, "still down")
    scripted.watches = [WatchAttempt([], down) for _ in range(3)]

    with pytest.raises(UnavailableError, match="still down"):
        list(client.job("job-1").watch(reconnect_for=0.0))

    assert 1 <= len(scripted.sent("WatchJob")) <= 2


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (grpc.StatusCode.NOT_FOUND, NotFoundError),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
        (grpc.StatusCode.INTERNAL, InternalError),
    ],
)
def test_watch_raises_other_errors_at_once(
    client: Client, scripted: Scripted, code: grpc.StatusCode, error: type[TokenweaveError]
) -> None:
    scripted.watches = [
        WatchAttempt([event(1, jobs_pb2.JOB_STATE_RUNNING)], (code, "job job-1 is gone")),
        WatchAttempt([event(2, jobs_pb2.JOB_STATE_SUCCEEDED)]),  # never asked for
    ]
    seen: list[JobInfo] = []

    with pytest.raises(error, match="job job-1 is gone"):
        seen.extend(client.job("job-1").watch())

    assert [i.sequence for i in seen] == [1]
    assert len(scripted.sent("WatchJob")) == 1


# -- errors -----------------------------------------------------------------------------------

STATUSES: list[tuple[grpc.StatusCode, type[TokenweaveError]]] = [
    (grpc.StatusCode.INVALID_ARGUMENT, InvalidArgumentError),
    (grpc.StatusCode.NOT_FOUND, NotFoundError),
    (grpc.StatusCode.FAILED_PRECONDITION, FailedPreconditionError),
    (grpc.StatusCode.PERMISSION_DENIED, PermissionDeniedError),
    (grpc.StatusCode.UNAUTHENTICATED, UnauthenticatedError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceExhaustedError),
    (grpc.StatusCode.UNAVAILABLE, UnavailableError),
    (grpc.StatusCode.INTERNAL, InternalError),
]


@pytest.mark.parametrize(("code", "error"), STATUSES, ids=[c.name for c, _ in STATUSES])
def test_each_status_becomes_its_error_class_with_the_servers_message(
    client: Client, scripted: Scripted, code: grpc.StatusCode, error: type[TokenweaveError]
) -> None:
    scripted.abort = (code, f"the server says {code.name.lower()}")

    with pytest.raises(error) as caught:
        client.job("job-1")

    assert type(caught.value) is error
    assert caught.value.message == f"the server says {code.name.lower()}"
    assert caught.value.status == code.name
    assert isinstance(caught.value.__cause__, grpc.RpcError)


@pytest.mark.parametrize("code", [grpc.StatusCode.ABORTED, grpc.StatusCode.DATA_LOSS])
def test_a_status_without_a_class_becomes_the_root_error(
    client: Client, scripted: Scripted, code: grpc.StatusCode
) -> None:
    scripted.abort = (code, "odd")

    with pytest.raises(TokenweaveError, match="odd") as caught:
        client.nodes()

    assert type(caught.value) is TokenweaveError


def test_a_status_without_details_is_named_in_the_message(
    client: Client, scripted: Scripted
) -> None:
    scripted.abort = (grpc.StatusCode.NOT_FOUND, "")

    with pytest.raises(NotFoundError) as caught:
        client.job("job-1")

    assert caught.value.message == "NOT_FOUND"


def test_every_call_translates_errors(client: Client, scripted: Scripted) -> None:
    job = client.job("job-1")
    scripted.requests.clear()
    scripted.abort = (grpc.StatusCode.RESOURCE_EXHAUSTED, "too much")
    calls = {
        "SubmitJob (embed)": lambda: client.embed(["x"]),
        "SubmitJob (submit)": lambda: client.submit("count", ["x"]),
        "GetJob": lambda: client.job("job-1"),
        "CancelJob": lambda: client.cancel("job-1"),
        "ListJobs": lambda: client.jobs(),
        "ListNodes": lambda: client.nodes(),
        "GetJobResult": lambda: list(client._results("job-1")),
        "WatchJob": lambda: list(job.watch()),
        "GetJob (refresh)": job.refresh,
    }
    for name, call in calls.items():
        with pytest.raises(ResourceExhaustedError, match="too much"):
            call()
        assert scripted.requests, name
        scripted.requests.clear()


def test_results_errors_are_translated_in_outputs(client: Client, scripted: Scripted) -> None:
    scripted.watches = [WatchAttempt([event(1, jobs_pb2.JOB_STATE_SUCCEEDED)])]
    scripted.results = [embed_result(0, "doc-0", windows=1, dim=4)]
    scripted.results_abort = (grpc.StatusCode.NOT_FOUND, "results of job-1 were deleted")

    with pytest.raises(NotFoundError, match="results of job-1 were deleted"):
        client.job("job-1").outputs()


# -- conversions ------------------------------------------------------------------------------


def test_get_job_converts_every_field(client: Client, scripted: Scripted) -> None:
    scripted.job = job_message(
        "job-9",
        jobs_pb2.JOB_STATE_SUCCEEDED,
        window=128,
        overlap=16,
        documents=3,
        tokens=1000,
        windows=12,
        shards_total=2,
        shards_done=2,
        tokens_processed=1030,
        error="",
        nodes=[
            jobs_pb2.NodeShare(node_id="n1", address="0xabc", shards=1, tokens=600),
            jobs_pb2.NodeShare(node_id="n2", address="0xdef", shards=1, tokens=430),
        ],
        nodes_busy=0,
        dataset="bafyroot",
        workload="embed",
        options={"window": "128", "overlap": "16"},
    )
    scripted.job.finished_at.FromDatetime(FINISHED)

    info = client.job("job-9").info

    assert scripted.sent("GetJob")[0].job_id == "job-9"
    assert info == JobInfo(
        job_id="job-9",
        state=JobState.SUCCEEDED,
        workload="embed",
        options={"window": "128", "overlap": "16"},
        model="all-minilm-l6-v2",
        documents=3,
        tokens=1000,
        items=12,
        shards_total=2,
        shards_done=2,
        tokens_processed=1030,
        created_at=CREATED,
        started_at=None,
        finished_at=FINISHED,
        error="",
        version=0,
        nodes=(NodeShare("n1", "0xabc", 1, 600), NodeShare("n2", "0xdef", 1, 430)),
        nodes_busy=0,
        dataset="bafyroot",
        tokens_per_second=0.0,
    )
    # The names of the 0.1 SDK.
    assert info.status is JobStatus.SUCCEEDED
    assert info.window == 128
    assert info.overlap == 16
    assert info.windows == 12
    assert info.sequence == 0


def test_a_job_without_workload_or_times_reads_as_embed(client: Client, scripted: Scripted) -> None:
    scripted.job = jobs_pb2.Job(job_id="old", state=jobs_pb2.JOB_STATE_RUNNING, model="m")

    info = client.job("old").info

    assert info.workload == "embed"
    assert info.created_at is None
    assert info.finished_at is None
    assert info.options == {}
    assert info.window == 0
    assert info.overlap == 0


def test_window_and_overlap_fall_back_to_the_typed_fields(
    client: Client, scripted: Scripted
) -> None:
    scripted.job = jobs_pb2.Job(
        job_id="old", state=jobs_pb2.JOB_STATE_QUEUED, model="m", window=256, overlap=32
    )

    info = client.job("old").info

    assert (info.window, info.overlap) == (256, 32)


def test_cancel_sends_the_id_and_returns_the_job(client: Client, scripted: Scripted) -> None:
    scripted.job = job_message("job-3", jobs_pb2.JOB_STATE_CANCELLED)
    scripted.job.finished_at.FromDatetime(FINISHED)

    info = client.cancel("job-3")

    assert scripted.sent("CancelJob")[0].job_id == "job-3"
    assert info.state is JobState.CANCELLED
    assert info.finished_at == FINISHED


def test_job_cancel_updates_its_info(client: Client, scripted: Scripted) -> None:
    job = client.embed(["x"])
    scripted.job = job_message(state=jobs_pb2.JOB_STATE_CANCELLED)

    assert job.cancel().state is JobState.CANCELLED
    assert job.info.state is JobState.CANCELLED


def test_jobs_converts_the_list_and_sends_the_limit(client: Client, scripted: Scripted) -> None:
    scripted.jobs = [
        job_message("j2", jobs_pb2.JOB_STATE_RUNNING, windows=7, options={"window": "64"}),
        job_message("j1", jobs_pb2.JOB_STATE_FAILED, error="boom", workload="count"),
    ]

    jobs = client.jobs(limit=2)

    assert scripted.sent("ListJobs")[0].limit == 2
    assert [(j.job_id, j.status, j.workload, j.windows, j.window, j.error) for j in jobs] == [
        ("j2", JobState.RUNNING, "embed", 7, 64, ""),
        ("j1", JobState.FAILED, "count", 0, 0, "boom"),
    ]
    assert all(isinstance(j, JobInfo) for j in jobs)
    assert client.jobs() == jobs
    assert scripted.sent("ListJobs")[1].limit == 50


def test_nodes_converts_each_node(client: Client, scripted: Scripted) -> None:
    seen = dt.datetime(2026, 1, 2, 3, 5, 0, tzinfo=dt.UTC)
    online = jobs_pb2.NodeInfo(
        node_id="n1",
        address="0xabc",
        state=jobs_pb2.NODE_STATE_ONLINE,
        hardware=jobs_pb2.Hardware(
            cpu_cores=16,
            memory_bytes=64 << 30,
            gpus=[jobs_pb2.Gpu(name="H100", memory_bytes=80 << 30)],
            providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
            platform="linux-x86_64",
        ),
        models=[
            jobs_pb2.NodeModel(name="all-minilm-l6-v2", sha256="ab" * 32, tokens_per_second=5e4)
        ],
        shards_running=2,
        shards_done=40,
        tokens_processed=123_456,
        version="0.2.0",
        peer_id="12D3KooW",
        multiaddrs=["/ip4/127.0.0.1/tcp/4001"],
        reputation=0.5,
        audits_passed=3,
        audits_failed=1,
        verifications_passed=7,
        verifications_failed=2,
        withheld=True,
    )
    online.last_seen.FromDatetime(seen)
    offline = jobs_pb2.NodeInfo(node_id="n2", state=jobs_pb2.NODE_STATE_OFFLINE)
    scripted.nodes = [online, offline]

    first, second = client.nodes()

    assert first == NodeInfo(
        node_id="n1",
        address="0xabc",
        online=True,
        hardware=Hardware(
            cpu_cores=16,
            memory_bytes=64 << 30,
            gpus=(Gpu("H100", 80 << 30),),
            providers=("CUDAExecutionProvider", "CPUExecutionProvider"),
            platform="linux-x86_64",
        ),
        models=(ModelOffer("all-minilm-l6-v2", "ab" * 32, 5e4),),
        shards_running=2,
        shards_done=40,
        tokens_processed=123_456,
        last_seen=seen,
        version="0.2.0",
        peer_id="12D3KooW",
        multiaddrs=("/ip4/127.0.0.1/tcp/4001",),
        reputation=0.5,
        audits_passed=3,
        audits_failed=1,
        verifications_passed=7,
        verifications_failed=2,
        withheld=True,
    )
    # The names of the 0.1 SDK.
    assert first.cpu_cores == 16
    assert first.memory_bytes == 64 << 30
    assert first.gpus == ("H100",)
    assert first.providers == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert first.speeds == {"all-minilm-l6-v2": 5e4}
    assert second.online is False
    assert second.last_seen is None
    assert second.hardware == Hardware()
    assert (second.cpu_cores, second.gpus, second.speeds) == (0, (), {})
    assert second.reputation == 0.0  # proto3 default: the server always sends it


def test_nodes_of_an_empty_network(client: Client, scripted: Scripted) -> None:
    assert client.nodes() == []
    assert len(scripted.sent("ListNodes")) == 1


def test_a_single_string_is_not_a_list_of_documents(scripted: Scripted, client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="not one string"):
        client.embed("one long text")
    assert not scripted.requests


def test_result_reads_an_embedding_from_a_0_1_coordinators_repeated_floats(
    client: Client, scripted: Scripted
) -> None:
    """A 0.1 coordinator ignores `tensors` and sends its repeated-float fields."""
    scripted.watches = [WatchAttempt([event(1, jobs_pb2.JOB_STATE_SUCCEEDED)])]
    legacy = jobs_pb2.DocumentResult(index=0, name="doc-0", tokens=7, embedding=[0.6, 0.8])
    legacy.windows.add(start=0, end=4, char_start=0, char_end=20, embedding=[1.0, 0.0])
    legacy.windows.add(start=3, end=7, char_start=15, char_end=33, embedding=[0.0, 1.0])
    scripted.results = [legacy]

    (doc,) = client.embed(["text"]).result().documents

    np.testing.assert_array_equal(doc.spans, [[0, 4], [3, 7]])
    np.testing.assert_array_equal(doc.char_spans, [[0, 20], [15, 33]])
    np.testing.assert_array_equal(doc.window_embeddings, [[1, 0], [0, 1]])
    np.testing.assert_allclose(doc.embedding, [0.6, 0.8])


def test_result_of_a_job_of_another_workload_says_to_use_outputs(
    client: Client, scripted: Scripted
) -> None:
    scripted.job = job_message("j", jobs_pb2.JOB_STATE_SUCCEEDED)
    scripted.job.workload = "count"
    with pytest.raises(FailedPreconditionError, match="'count' job, not an embedding"):
        client.job("j").result()
