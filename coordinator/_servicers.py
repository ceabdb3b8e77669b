"""Thin gRPC servicers: parse and validate, call the dispatcher, convert back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from google.protobuf.timestamp_pb2 import Timestamp
from grpc import aio

from tokenweave.coordinator._dataset_jobs import DatasetReader
from tokenweave.coordinator._dispatch import AuditAnswer, Dispatcher, NodeLane
from tokenweave.coordinator._nodes import NodeRegistry
from tokenweave.coordinator._views import (
    Assignment,
    AuditChallenge,
    DocumentInput,
    FetchBlock,
    JobRequest,
    JobView,
    ModelOffer,
    NodeRegistration,
    NodeView,
    ShardAck,
    ShardCancel,
    ShardOutput,
    StoreBlock,
)
from tokenweave.errors import InvalidArgumentError
from tokenweave.storage import CID
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc, nodes_pb2, nodes_pb2_grpc

logger = logging.getLogger(__name__)

Context: TypeAlias = aio.ServicerContext[Any, Any]
MAX_LIST_LIMIT = 1000


def timestamp_proto(value: Any) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def job_to_proto(view: JobView) -> jobs_pb2.Job:
    return jobs_pb2.Job(
        job_id=view.job_id,
        state=jobs_pb2.JobState.Value(f"JOB_STATE_{view.state}"),
        model=view.model,
        window=view.window,
        overlap=view.overlap,
        documents=view.documents,
        tokens=view.tokens,
        windows=view.windows,
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
    )


def _hardware_to_dict(hw: jobs_pb2.Hardware) -> dict[str, object]:
    return {
        "cpu_cores": hw.cpu_cores,
        "memory_bytes": hw.memory_bytes,
        "gpus": [{"name": g.name, "memory_bytes": g.memory_bytes} for g in hw.gpus],
        "providers": list(hw.providers),
        "platform": hw.platform,
    }


def _hardware_to_proto(hw: dict[str, Any]) -> jobs_pb2.Hardware:
    return jobs_pb2.Hardware(
        cpu_cores=int(hw.get("cpu_cores", 0)),
        memory_bytes=int(hw.get("memory_bytes", 0)),
        gpus=[
            jobs_pb2.Gpu(name=g["name"], memory_bytes=g["memory_bytes"]) for g in hw.get("gpus", [])
        ],
        providers=list(hw.get("providers", [])),
        platform=str(hw.get("platform", "")),
    )


def node_to_proto(view: NodeView) -> jobs_pb2.NodeInfo:
    return jobs_pb2.NodeInfo(
        node_id=view.node_id,
        address=view.address,
        state=jobs_pb2.NODE_STATE_ONLINE if view.online else jobs_pb2.NODE_STATE_OFFLINE,
        hardware=_hardware_to_proto(view.hardware),
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


def _require_job_id(job_id: str) -> str:
    if not job_id:
        raise InvalidArgumentError("job_id is required")
    return job_id


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self, dispatcher: Dispatcher, registry: NodeRegistry, datasets: DatasetReader
    ) -> None:
        self._dispatcher = dispatcher
        self._registry = registry
        self._datasets = datasets

    async def SubmitJob(
        self, request: jobs_pb2.SubmitJobRequest, context: Context
    ) -> jobs_pb2.SubmitJobResponse:
        if not request.model:
            raise InvalidArgumentError("model is required")
        window = request.window if request.HasField("window") else None
        overlap = request.overlap if request.HasField("overlap") else None
        if request.dataset.root:
            if request.documents:
                raise InvalidArgumentError("give documents or a dataset, not both")
            root = str(CID.parse(request.dataset.root))
            dataset = await self._datasets.documents(root, request.dataset.text_field)
            job_request = JobRequest(
                request.model, dataset.documents, window, overlap, root, dataset.holders
            )
        else:
            documents = tuple(DocumentInput(d.name, d.text) for d in request.documents)
            job_request = JobRequest(request.model, documents, window, overlap)
        job = await self._dispatcher.submit(job_request)
        return jobs_pb2.SubmitJobResponse(job=job_to_proto(job))

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: Context
    ) -> jobs_pb2.GetJobResponse:
        job = await self._dispatcher.job(_require_job_id(request.job_id))
        return jobs_pb2.GetJobResponse(job=job_to_proto(job))

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.WatchJobResponse]:
        async for view in self._dispatcher.watch(
            _require_job_id(request.job_id), request.after_sequence
        ):
            yield jobs_pb2.WatchJobResponse(
                sequence=view.version,
                job=job_to_proto(view),
                tokens_per_second=view.tokens_per_second,
            )

    async def GetJobResult(
        self, request: jobs_pb2.GetJobResultRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.GetJobResultResponse]:
        async for doc in self._dispatcher.results(_require_job_id(request.job_id)):
            yield jobs_pb2.GetJobResultResponse(
                document=jobs_pb2.DocumentResult(
                    index=doc.index,
                    name=doc.name,
                    tokens=doc.tokens,
                    windows=[
                        jobs_pb2.WindowEmbedding(
                            start=w.start,
                            end=w.end,
                            char_start=w.char_start,
                            char_end=w.char_end,
                            embedding=w.embedding.tolist(),
                        )
                        for w in doc.windows
                    ],
                    embedding=doc.embedding.tolist(),
                )
            )

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: Context
    ) -> jobs_pb2.CancelJobResponse:
        job = await self._dispatcher.cancel(_require_job_id(request.job_id))
        return jobs_pb2.CancelJobResponse(job=job_to_proto(job))

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        if request.limit > MAX_LIST_LIMIT:
            raise InvalidArgumentError(
                f"limit={request.limit} is above the maximum of {MAX_LIST_LIMIT}"
            )
        jobs = await self._dispatcher.list_jobs(request.limit or 50)
        return jobs_pb2.ListJobsResponse(jobs=[job_to_proto(j) for j in jobs])

    async def ListNodes(
        self, request: jobs_pb2.ListNodesRequest, context: Context
    ) -> jobs_pb2.ListNodesResponse:
        nodes = await self._registry.list(self._dispatcher.running_by_node())
        return jobs_pb2.ListNodesResponse(nodes=[node_to_proto(n) for n in nodes])


#: Seconds a node has, after opening its lease stream, to say hello.
HELLO_TIMEOUT_S = 10.0


def _assignment_to_proto(a: Assignment) -> nodes_pb2.ShardAssignment:
    return nodes_pb2.ShardAssignment(
        shard_id=a.shard_id,
        job_id=a.job_id,
        model=a.model,
        model_sha256=a.model_sha256,
        windows=[nodes_pb2.Window(token_ids=w.astype("<u4").tobytes()) for w in a.windows],
        sources=[
            nodes_pb2.DocumentSource(
                document=document,
                file=source.file,
                start=source.start,
                end=source.end,
                text_field=source.text_field,
            )
            for document, source in a.sources
        ],
        spans=[nodes_pb2.DocumentSpan(document=d, start=s, end=e) for d, s, e in a.spans],
    )


def _lane_message(
    message: Assignment | ShardCancel | ShardAck | StoreBlock | FetchBlock | AuditChallenge,
) -> nodes_pb2.LeaseResponse:
    if isinstance(message, Assignment):
        return nodes_pb2.LeaseResponse(assignment=_assignment_to_proto(message))
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


class NodeServicer(nodes_pb2_grpc.NodeServiceServicer):
    def __init__(self, dispatcher: Dispatcher, registry: NodeRegistry, heartbeat_ms: int) -> None:
        self._dispatcher = dispatcher
        self._registry = registry
        self._heartbeat_ms = heartbeat_ms

    async def GetChallenge(
        self, request: nodes_pb2.GetChallengeRequest, context: Context
    ) -> nodes_pb2.GetChallengeResponse:
        message, nonce = self._registry.challenge(request.address)
        return nodes_pb2.GetChallengeResponse(message=message, nonce=nonce)

    async def Register(
        self, request: nodes_pb2.RegisterRequest, context: Context
    ) -> nodes_pb2.RegisterResponse:
        node_id, token = await self._registry.register(
            NodeRegistration(
                address=request.address,
                nonce=request.nonce,
                signature=request.signature,
                hardware=_hardware_to_dict(request.hardware),
                models=tuple(
                    ModelOffer(m.name, m.sha256, m.tokens_per_second) for m in request.models
                ),
                max_inflight_shards=request.max_inflight_shards,
                version=request.version,
                peer_id=request.peer_id,
                multiaddrs=tuple(request.multiaddrs),
            )
        )
        logger.info("node %s registered (%s)", node_id, ", ".join(m.name for m in request.models))
        return nodes_pb2.RegisterResponse(
            node_id=node_id, session_token=token, heartbeat_interval_ms=self._heartbeat_ms
        )

    async def Heartbeat(
        self, request: nodes_pb2.HeartbeatRequest, context: Context
    ) -> nodes_pb2.HeartbeatResponse:
        self._registry.heartbeat(request.node_id, request.session_token)
        return nodes_pb2.HeartbeatResponse()

    async def Lease(
        self, request_iterator: AsyncIterator[nodes_pb2.LeaseRequest], context: Context
    ) -> AsyncIterator[nodes_pb2.LeaseResponse]:
        try:
            first = await asyncio.wait_for(anext(aiter(request_iterator), None), HELLO_TIMEOUT_S)
        except TimeoutError:
            raise InvalidArgumentError(
                f"a lease stream must open with a hello message; none came within "
                f"{HELLO_TIMEOUT_S:.0f} s"
            ) from None
        if first is None or first.WhichOneof("message") != "hello":
            raise InvalidArgumentError("a lease stream must open with a hello message")
        lane = await self._dispatcher.attach(first.hello.node_id, first.hello.session_token)
        reader = asyncio.create_task(self._read(lane, request_iterator))
        try:
            while True:
                get = asyncio.create_task(lane.outbox.get())
                done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    reader.result()  # re-raise what ended the reader, if anything
                    return
                message = get.result()
                if message is None:
                    return
                yield _lane_message(message)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            # The call may be cancelled (the node hung up): finish the state change regardless.
            await asyncio.shield(self._dispatcher.detach(lane, reason="lease stream closed"))
            self._registry.drop(lane.node_id, lane.token)

    async def _read(self, lane: NodeLane, requests: AsyncIterator[nodes_pb2.LeaseRequest]) -> None:
        """Apply what the node reports. Each change is shielded: cancelling the reader (the node
        hung up) must not interrupt a shard between the database and the dispatcher's memory."""
        async for request in requests:
            kind = request.WhichOneof("message")
            if kind == "result":
                r = request.result
                output = ShardOutput(
                    shard_id=r.shard_id,
                    embeddings=r.embeddings,
                    rows=r.rows,
                    dim=r.dim,
                    tokens=r.tokens,
                    wall_seconds=r.wall_seconds,
                    digest=r.digest,
                    provider=r.provider,
                    tokens_digest=r.tokens_digest,
                )
                await asyncio.shield(self._dispatcher.complete(lane, output))
            elif kind == "failure":
                await asyncio.shield(
                    self._dispatcher.fail(lane, request.failure.shard_id, request.failure.error)
                )
            elif kind == "stored":
                s = request.stored
                self._dispatcher.block_stored(lane, s.cid, s.ok, s.error)
            elif kind == "proof":
                a = request.proof
                self._dispatcher.audit_answered(lane, a.cid, a.nonce, AuditAnswer(a.proof, a.error))
            elif kind == "release":
                await asyncio.shield(
                    self._dispatcher.hand_back(lane, list(request.release.shard_ids))
                )
            else:
                raise InvalidArgumentError(
                    f"unexpected {kind or 'empty'} message on a lease stream"
                )
