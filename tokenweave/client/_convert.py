"""Protobuf messages → the SDK's frozen values."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from tokenweave.v1 import jobs_pb2


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class NodeShare:
    node_id: str
    address: str
    shards: int
    tokens: int


@dataclass(frozen=True, slots=True)
class JobInfo:
    job_id: str
    status: JobStatus
    model: str
    window: int
    overlap: int
    documents: int
    tokens: int
    windows: int
    shards_total: int
    shards_done: int
    tokens_processed: int
    nodes_busy: int
    nodes: tuple[NodeShare, ...]
    created_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str
    #: Increases with every change; WatchJob resumes after it.
    sequence: int = 0
    tokens_per_second: float = 0.0
    #: Root CID of the dataset the documents came from; empty when they were sent inline.
    dataset: str = ""


@dataclass(frozen=True, slots=True)
class DocumentEmbedding:
    index: int
    name: str
    #: Document tokens, special tokens excluded.
    tokens: int
    #: [windows, 2]: each window's [start, end) in the document's token sequence.
    spans: npt.NDArray[np.int64]
    #: [windows, 2]: each window's [start, end) in the document's text, in characters.
    char_spans: npt.NDArray[np.int64]
    #: [windows, dim] float32.
    window_embeddings: npt.NDArray[np.float32]
    #: [dim] float32: token-weighted mean of the windows, L2-normalised.
    embedding: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    address: str
    online: bool
    cpu_cores: int
    memory_bytes: int
    gpus: tuple[str, ...]
    providers: tuple[str, ...]
    models: dict[str, float]
    shards_running: int
    shards_done: int
    tokens_processed: int
    last_seen: dt.datetime | None
    version: str
    peer_id: str = ""
    multiaddrs: tuple[str, ...] = ()
    #: 1.0 for a new node; halved by each failed audit or wrong output.
    reputation: float = 1.0
    audits_passed: int = 0
    audits_failed: int = 0
    #: Verified shards where its output agreed with another node's, and where it did not.
    verifications_passed: int = 0
    verifications_failed: int = 0
    #: Caught returning wrong outputs in the open epoch: its rewards for it are withheld.
    withheld: bool = False


def _time(message: jobs_pb2.Job | jobs_pb2.NodeInfo, name: str) -> dt.datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    value: dt.datetime = getattr(message, name).ToDatetime(tzinfo=dt.UTC)
    return value


def job_info(job: jobs_pb2.Job, sequence: int = 0, tokens_per_second: float = 0.0) -> JobInfo:
    return JobInfo(
        job_id=job.job_id,
        status=JobStatus(jobs_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")),
        model=job.model,
        window=job.window,
        overlap=job.overlap,
        documents=job.documents,
        tokens=job.tokens,
        windows=job.windows,
        shards_total=job.shards_total,
        shards_done=job.shards_done,
        tokens_processed=job.tokens_processed,
        nodes_busy=job.nodes_busy,
        nodes=tuple(NodeShare(n.node_id, n.address, n.shards, n.tokens) for n in job.nodes),
        created_at=_time(job, "created_at"),
        finished_at=_time(job, "finished_at"),
        error=job.error,
        dataset=job.dataset,
        sequence=sequence,
        tokens_per_second=tokens_per_second,
    )


def document_embedding(doc: jobs_pb2.DocumentResult) -> DocumentEmbedding:
    dim = len(doc.embedding)
    spans = np.array([(w.start, w.end) for w in doc.windows], dtype=np.int64).reshape(-1, 2)
    char_spans = np.array([(w.char_start, w.char_end) for w in doc.windows], dtype=np.int64)
    windows = np.array([w.embedding for w in doc.windows], dtype=np.float32).reshape(-1, dim)
    return DocumentEmbedding(
        index=doc.index,
        name=doc.name,
        tokens=doc.tokens,
        spans=spans,
        char_spans=char_spans.reshape(-1, 2),
        window_embeddings=windows,
        embedding=np.array(doc.embedding, dtype=np.float32),
    )


def node_info(node: jobs_pb2.NodeInfo) -> NodeInfo:
    return NodeInfo(
        node_id=node.node_id,
        address=node.address,
        online=node.state == jobs_pb2.NODE_STATE_ONLINE,
        cpu_cores=node.hardware.cpu_cores,
        memory_bytes=node.hardware.memory_bytes,
        gpus=tuple(g.name for g in node.hardware.gpus),
        providers=tuple(node.hardware.providers),
        models={m.name: m.tokens_per_second for m in node.models},
        shards_running=node.shards_running,
        shards_done=node.shards_done,
        tokens_processed=node.tokens_processed,
        last_seen=_time(node, "last_seen"),
        version=node.version,
        peer_id=node.peer_id,
        multiaddrs=tuple(node.multiaddrs),
        reputation=node.reputation,
        audits_passed=node.audits_passed,
        audits_failed=node.audits_failed,
        verifications_passed=node.verifications_passed,
        verifications_failed=node.verifications_failed,
        withheld=node.withheld,
    )
