"""The coordinator's one conversion module: database rows → frozen views ⇄ protobuf messages.

The store and registry build views, and servicers parse requests and build replies, only through
these functions, so a field is copied in one place. (The SDK's side of the same boundary is
tokenweave/client/_convert.py.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from tokenweave import tensors
from tokenweave.coordinator._db import JobRow, NodeRow, ShardRow, utcnow
from tokenweave.coordinator._ledger import EpochView
from tokenweave.coordinator._limits import RegistrationLimits
from tokenweave.coordinator._metering import format_micro
from tokenweave.coordinator._views import (
    Assignment,
    AuditChallenge,
    DocumentResult,
    FetchBlock,
    NodeRegistration,
    QueuedShard,
    ShardAck,
    ShardCancel,
    ShardOutput,
    StoreBlock,
)
from tokenweave.types import Gpu, Hardware, JobInfo, JobState, ModelOffer, NodeInfo, NodeShare
from tokenweave.v1 import jobs_pb2, nodes_pb2, rewards_pb2


def timestamp_proto(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


# -- jobs ---------------------------------------------------------------------------------------


def job_from_row(row: JobRow, nodes: Sequence[NodeShare] = ()) -> JobInfo:
    end = row.finished_at or utcnow()
    elapsed = (end - row.started_at).total_seconds() if row.started_at is not None else 0.0
    return JobInfo(
        job_id=row.job_id,
        state=JobState(row.state),
        workload=row.workload,
        options=dict(row.options),
        model=row.model,
        documents=row.documents,
        tokens=row.tokens,
        items=row.items,
        shards_total=row.shards_total,
        shards_done=row.shards_done,
        tokens_processed=row.tokens_processed,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        error=row.error,
        version=row.version,
        nodes=tuple(nodes),
        dataset=row.dataset,
        tokens_per_second=row.tokens_processed / elapsed if elapsed > 0 else 0.0,
        owner=row.owner,
    )


def queued_shard(shard: ShardRow, job: JobRow) -> QueuedShard:
    """The dispatcher's entry for a shard row of `job`."""
    return QueuedShard(
        shard_id=shard.shard_id,
        job_id=shard.job_id,
        workload=job.workload,
        model=job.model,
        model_sha256=job.model_sha256,
        cost=shard.cost,
        detail=shard.detail,
        read_bytes=shard.read_bytes,
        local_nodes=frozenset(shard.local_nodes),
        index=shard.index,
    )


def _int_option(view: JobInfo, name: str) -> int:
    raw = view.options.get(name, "")
    return int(raw) if raw.isdigit() else 0


def job_to_proto(view: JobInfo) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        job_id=view.job_id,
        state=jobs_pb2.JobState.Value(f"JOB_STATE_{view.state}"),
        model=view.model,
        # 0.1 clients read window and overlap from their own fields.
        window=_int_option(view, "window"),
        overlap=_int_option(view, "overlap"),
        documents=view.documents,
        tokens=view.tokens,
        windows=view.items,
        shards_total=view.shards_total,
        shards_done=view.shards_done,
        tokens_processed=view.tokens_processed,
        created_at=timestamp_proto(view.created_at),
        finished_at=timestamp_proto(view.finished_at),
        error=view.error,
        nodes=[
            jobs_pb2.NodeShare(
                node_id=n.node_id, address=n.address, shards=n.shards, tokens=n.tokens
            )
            for n in view.nodes
        ],
        nodes_busy=view.nodes_busy,
        dataset=view.dataset,
        workload=view.workload,
        options=dict(view.options),
        owner=view.owner,
    )


def document_result_to_proto(doc: DocumentResult, as_tensors: bool) -> jobs_pb2.DocumentResult:
    """One document's result: named tensors, or (for a 0.1 client, which did not ask for
    tensors) an embedding result in the `repeated float` fields it reads."""
    message = jobs_pb2.DocumentResult(index=doc.index, name=doc.name, tokens=doc.tokens)
    if as_tensors:
        for name, value in doc.outputs.items():
            message.outputs[name].CopyFrom(tensors.to_proto(value))
        return message
    if "window_embeddings" in doc.outputs:
        spans = np.asarray(doc.outputs["spans"])
        chars = np.asarray(doc.outputs["char_spans"])
        message.windows.extend(
            jobs_pb2.WindowEmbedding(
                start=int(span[0]),
                end=int(span[1]),
                char_start=int(char[0]),
                char_end=int(char[1]),
                embedding=row.tolist(),
            )
            for span, char, row in zip(
                spans, chars, np.asarray(doc.outputs["window_embeddings"]), strict=True
            )
        )
        message.embedding.extend(np.asarray(doc.outputs["embedding"]).tolist())
    return message


# -- nodes --------------------------------------------------------------------------------------


def hardware_from_proto(hw: jobs_pb2.Hardware) -> Hardware:
    return Hardware(
        cpu_cores=hw.cpu_cores,
        memory_bytes=hw.memory_bytes,
        gpus=tuple(Gpu(g.name, g.memory_bytes, g.compute_capability) for g in hw.gpus),
        providers=tuple(hw.providers),
        platform=hw.platform,
    )


def hardware_to_proto(hw: Hardware) -> jobs_pb2.Hardware:
    return jobs_pb2.Hardware(
        cpu_cores=hw.cpu_cores,
        memory_bytes=hw.memory_bytes,
        gpus=[
            jobs_pb2.Gpu(
                name=g.name, memory_bytes=g.memory_bytes, compute_capability=g.compute_capability
            )
            for g in hw.gpus
        ],
        providers=list(hw.providers),
        platform=hw.platform,
    )


def hardware_to_json(hw: Hardware) -> dict[str, object]:
    return dataclasses.asdict(hw)


def hardware_from_json(hw: Mapping[str, Any]) -> Hardware:
    return Hardware(
        cpu_cores=int(hw.get("cpu_cores", 0)),
        memory_bytes=int(hw.get("memory_bytes", 0)),
        gpus=tuple(
            Gpu(str(g["name"]), int(g["memory_bytes"]), str(g.get("compute_capability", "")))
            for g in hw.get("gpus", ())
        ),
        providers=tuple(str(p) for p in hw.get("providers", ())),
        platform=str(hw.get("platform", "")),
    )


STORED = RegistrationLimits()


def node_from_row(row: NodeRow, online: bool, running: int, withheld: bool) -> NodeInfo:
    return NodeInfo(
        node_id=row.node_id,
        address=row.address,
        online=online,
        hardware=hardware_from_json(row.hardware),
        models=tuple(
            ModelOffer(str(m["name"]), str(m["sha256"]), float(str(m["tokens_per_second"])))
            for m in row.models[: STORED.max_models]
        ),
        shards_running=running,
        shards_done=row.shards_done,
        tokens_processed=row.tokens_processed,
        last_seen=row.last_seen,
        version=row.version,
        peer_id=row.peer_id,
        # Rows written before registrations were bounded may hold megabytes: never send those.
        multiaddrs=tuple(
            a[: STORED.max_multiaddr_chars] for a in row.multiaddrs[: STORED.max_multiaddrs]
        ),
        reputation=row.reputation,
        audits_passed=row.audits_passed,
        audits_failed=row.audits_failed,
        verifications_passed=row.verifications_passed,
        verifications_failed=row.verifications_failed,
        withheld=withheld,
    )


def node_to_proto(view: NodeInfo) -> jobs_pb2.NodeInfo:
    return jobs_pb2.NodeInfo(
        node_id=view.node_id,
        address=view.address,
        state=jobs_pb2.NODE_STATE_ONLINE if view.online else jobs_pb2.NODE_STATE_OFFLINE,
        hardware=hardware_to_proto(view.hardware),
        models=[
            jobs_pb2.NodeModel(name=m.name, sha256=m.sha256, tokens_per_second=m.tokens_per_second)
            for m in view.models
        ],
        shards_running=view.shards_running,
        shards_done=view.shards_done,
        tokens_processed=view.tokens_processed,
        last_seen=timestamp_proto(view.last_seen),
        version=view.version,
        peer_id=view.peer_id,
        multiaddrs=list(view.multiaddrs),
        reputation=view.reputation,
        audits_passed=view.audits_passed,
        audits_failed=view.audits_failed,
        verifications_passed=view.verifications_passed,
        verifications_failed=view.verifications_failed,
        withheld=view.withheld,
    )


def registration_from_proto(request: nodes_pb2.RegisterRequest) -> NodeRegistration:
    return NodeRegistration(
        address=request.address,
        nonce=request.nonce,
        signature=request.signature,
        hardware=hardware_from_proto(request.hardware),
        models=tuple(ModelOffer(m.name, m.sha256, m.tokens_per_second) for m in request.models),
        max_inflight_shards=request.max_inflight_shards,
        version=request.version,
        peer_id=request.peer_id,
        multiaddrs=tuple(request.multiaddrs),
        workloads=tuple(request.workloads),
    )


def output_from_proto(result: nodes_pb2.ShardResult) -> ShardOutput:
    return ShardOutput(
        shard_id=result.shard_id,
        output=result.output,
        tokens=result.tokens,
        wall_seconds=result.wall_seconds,
        digest=result.digest,
        provider=result.provider[:40],  # the column's width
    )


def lane_message_to_proto(
    message: Assignment | ShardCancel | ShardAck | StoreBlock | FetchBlock | AuditChallenge,
) -> nodes_pb2.LeaseResponse:
    if isinstance(message, Assignment):
        return nodes_pb2.LeaseResponse(
            assignment=nodes_pb2.ShardAssignment(
                shard_id=message.shard_id,
                job_id=message.job_id,
                model=message.model,
                model_sha256=message.model_sha256,
                workload=message.workload,
                payload=message.payload,
            )
        )
    if isinstance(message, StoreBlock):
        return nodes_pb2.LeaseResponse(
            store=nodes_pb2.StoreBlock(cid=message.cid, data=message.data)
        )
    if isinstance(message, FetchBlock):
        return nodes_pb2.LeaseResponse(
            fetch=nodes_pb2.FetchBlock(cid=message.cid, providers=list(message.providers))
        )
    if isinstance(message, AuditChallenge):
        return nodes_pb2.LeaseResponse(
            audit=nodes_pb2.AuditChallenge(cid=message.cid, nonce=message.nonce)
        )
    if isinstance(message, ShardCancel):
        return nodes_pb2.LeaseResponse(cancel=nodes_pb2.ShardCancel(shard_id=message.shard_id))
    return nodes_pb2.LeaseResponse(
        ack=nodes_pb2.ShardAck(
            shard_id=message.shard_id, accepted=message.accepted, reason=message.reason
        )
    )


# -- rewards ------------------------------------------------------------------------------------


def epoch_to_proto(view: EpochView) -> rewards_pb2.Epoch:
    return rewards_pb2.Epoch(
        epoch=view.epoch,
        state=rewards_pb2.EpochState.Value(f"EPOCH_STATE_{view.state}"),
        root=view.root,
        operators=view.operators,
        tokens=view.tokens,
        amount=format_micro(view.amount_micro),
        tx_hash=view.tx_hash,
        closed_at=timestamp_proto(view.closed_at),
        settled_at=timestamp_proto(view.settled_at),
        attempts=view.attempts,
        last_error=view.last_error,
    )
