"""The SDK's one conversion module: protobuf messages → the shared frozen types
(`tokenweave.types`, the same ones the coordinator builds) and the SDK's result values."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tokenweave import tensors
from tokenweave.errors import TokenweaveError
from tokenweave.types import (
    Gpu,
    Hardware,
    JobInfo,
    ModelOffer,
    NodeInfo,
    NodeShare,
)
from tokenweave.types import JobState as JobStatus
from tokenweave.v1 import jobs_pb2

__all__ = [
    "DocumentEmbedding",
    "DocumentOutput",
    "JobInfo",
    "JobStatus",
    "NodeInfo",
    "NodeShare",
    "document_embedding",
    "document_output",
    "job_info",
    "node_info",
]


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


def _time(message: jobs_pb2.Job | jobs_pb2.NodeInfo, name: str) -> dt.datetime | None:
    if not message.HasField(name):  # type: ignore[arg-type]
        return None
    value: dt.datetime = getattr(message, name).ToDatetime(tzinfo=dt.UTC)
    return value


def _job_state(job: jobs_pb2.Job) -> JobStatus:
    name = jobs_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_") if job.state else ""
    try:
        return JobStatus(name)
    except ValueError:
        raise TokenweaveError(
            f"job {job.job_id} is in a state this SDK does not know ({job.state}); upgrade it"
        ) from None


def job_info(job: jobs_pb2.Job, sequence: int = 0, tokens_per_second: float = 0.0) -> JobInfo:
    options = dict(job.options)
    if not job.workload:  # a 0.1 coordinator: embedding, window and overlap in typed fields
        for name, value in (("window", job.window), ("overlap", job.overlap)):
            if value:
                options.setdefault(name, str(value))
    return JobInfo(
        job_id=job.job_id,
        state=_job_state(job),
        workload=job.workload or "embed",
        options=options,
        model=job.model,
        documents=job.documents,
        tokens=job.tokens,
        items=job.windows,
        shards_total=job.shards_total,
        shards_done=job.shards_done,
        tokens_processed=job.tokens_processed,
        created_at=_time(job, "created_at"),
        started_at=None,
        finished_at=_time(job, "finished_at"),
        error=job.error,
        version=sequence,
        nodes=tuple(NodeShare(n.node_id, n.address, n.shards, n.tokens) for n in job.nodes),
        nodes_busy=job.nodes_busy,
        dataset=job.dataset,
        tokens_per_second=tokens_per_second,
        owner=job.owner,
    )


@dataclass(frozen=True, slots=True)
class DocumentOutput:
    """One document's result in any workload: its named tensors."""

    index: int
    name: str
    #: Document tokens, special tokens excluded.
    tokens: int
    outputs: dict[str, npt.NDArray[np.generic]]


def document_output(doc: jobs_pb2.DocumentResult) -> DocumentOutput:
    outputs = {
        name: tensors.from_proto(value, f"result {name!r}")
        for name, value in sorted(doc.outputs.items())
    }
    if not outputs and doc.embedding:  # a 0.1 coordinator: an embedding in repeated floats
        outputs = {
            "embedding": np.asarray(doc.embedding, dtype=np.float32),
            "window_embeddings": np.asarray(
                [w.embedding for w in doc.windows], dtype=np.float32
            ).reshape(len(doc.windows), len(doc.embedding)),
            "spans": np.asarray([(w.start, w.end) for w in doc.windows], dtype=np.uint32),
            "char_spans": np.asarray(
                [(w.char_start, w.char_end) for w in doc.windows], dtype=np.uint32
            ),
        }
    return DocumentOutput(index=doc.index, name=doc.name, tokens=doc.tokens, outputs=outputs)


def document_embedding(doc: DocumentOutput) -> DocumentEmbedding:
    """An embedding job's document result (tensors "embedding", "window_embeddings", "spans",
    "char_spans")."""
    out = doc.outputs
    return DocumentEmbedding(
        index=doc.index,
        name=doc.name,
        tokens=doc.tokens,
        spans=out["spans"].astype(np.int64).reshape(-1, 2),
        char_spans=out["char_spans"].astype(np.int64).reshape(-1, 2),
        window_embeddings=out["window_embeddings"].astype(np.float32),
        embedding=out["embedding"].astype(np.float32),
    )


def _hardware(hw: jobs_pb2.Hardware) -> Hardware:
    return Hardware(
        cpu_cores=hw.cpu_cores,
        memory_bytes=hw.memory_bytes,
        gpus=tuple(Gpu(g.name, g.memory_bytes, g.compute_capability) for g in hw.gpus),
        providers=tuple(hw.providers),
        platform=hw.platform,
    )


def node_info(node: jobs_pb2.NodeInfo) -> NodeInfo:
    return NodeInfo(
        node_id=node.node_id,
        address=node.address,
        online=node.state == jobs_pb2.NODE_STATE_ONLINE,
        hardware=_hardware(node.hardware),
        models=tuple(ModelOffer(m.name, m.sha256, m.tokens_per_second) for m in node.models),
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
