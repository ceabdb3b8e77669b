"""Thin gRPC servicers: parse and validate, call the dispatcher, convert back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from grpc import aio

from tokenweave.coordinator._auth import current_principal
from tokenweave.coordinator._convert import (
    document_result_to_proto,
    job_to_proto,
    lane_message_to_proto,
    node_to_proto,
    output_from_proto,
    registration_from_proto,
)
from tokenweave.coordinator._dataset_jobs import DatasetReader
from tokenweave.coordinator._dispatch import Dispatcher
from tokenweave.coordinator._errors import checked_identifier
from tokenweave.coordinator._events import JobEvents
from tokenweave.coordinator._jobs import JobStore
from tokenweave.coordinator._lanes import DetachReason, NodeLane
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._limits import WatchStreams
from tokenweave.coordinator._nodes import NodeRegistry
from tokenweave.coordinator._paging import (
    JOB_PAGES,
    NODE_PAGES,
    JobListing,
    after_node,
    node_token,
)
from tokenweave.coordinator._views import AuditAnswer, JobRequest
from tokenweave.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError, clip
from tokenweave.storage import CID
from tokenweave.types import JobInfo
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc, nodes_pb2, nodes_pb2_grpc
from tokenweave.workloads import DocumentInput

logger = logging.getLogger(__name__)

Context: TypeAlias = aio.ServicerContext[Any, Any]


def _require_job_id(job_id: str) -> str:
    if not job_id:
        raise InvalidArgumentError("job_id is required")
    return checked_identifier(job_id, "job_id")


#: Bounds on a job's workload options (a map a client fills at will).
MAX_OPTIONS = 32
MAX_OPTION_KEY = 64
MAX_OPTION_VALUE = 1024


def _options(request: jobs_pb2.SubmitJobRequest) -> dict[str, str]:
    """The job's workload options: the map, with 0.1's typed window and overlap folded in."""
    if len(request.options) > MAX_OPTIONS:
        raise InvalidArgumentError(
            f"the job has {len(request.options)} options; at most {MAX_OPTIONS} are taken"
        )
    for key, value in request.options.items():
        if len(key) > MAX_OPTION_KEY or len(value) > MAX_OPTION_VALUE:
            raise InvalidArgumentError(
                f"option {clip(key)} is too long (names up to {MAX_OPTION_KEY} characters, "
                f"values up to {MAX_OPTION_VALUE})"
            )
    options = dict(request.options)
    for name in ("window", "overlap"):
        if request.HasField(name):
            if name in options:
                raise InvalidArgumentError(f"{name} is given twice (field and option)")
            options[name] = str(getattr(request, name))
    return options


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(
        self,
        dispatcher: Dispatcher,
        store: JobStore,
        events: JobEvents,
        registry: NodeRegistry,
        ledger: RewardLedger,
        datasets: DatasetReader,
        watchers: WatchStreams,
        listing: JobListing,
    ) -> None:
        self._dispatcher = dispatcher
        self._store = store
        self._events = events
        self._registry = registry
        self._ledger = ledger
        self._datasets = datasets
        self._watchers = watchers
        self._listing = listing

    async def SubmitJob(
        self, request: jobs_pb2.SubmitJobRequest, context: Context
    ) -> jobs_pb2.SubmitJobResponse:
        if not request.model:
            raise InvalidArgumentError("model is required")
        options = _options(request)
        if request.dataset.root:
            if request.documents:
                raise InvalidArgumentError("give documents or a dataset, not both")
            root = str(CID.parse(request.dataset.root))
            if request.workload == "infer":  # a dataset of tensors
                dataset = await self._datasets.tensors(root)
            else:
                dataset = await self._datasets.documents(
                    root, request.dataset.text_field, request.dataset.name_field
                )
            job_request = JobRequest(
                request.workload,
                request.model,
                dataset.documents,
                options,
                root,
                dataset.holders,
                owner=current_principal().client_id,
            )
        else:
            documents = tuple(DocumentInput(d.name, d.text, data=d.data) for d in request.documents)
            job_request = JobRequest(
                request.workload,
                request.model,
                documents,
                options,
                owner=current_principal().client_id,
            )
        job = await self._dispatcher.submit(job_request)
        return jobs_pb2.SubmitJobResponse(job=job_to_proto(job))

    async def _visible(self, job_id: str) -> JobInfo:
        """The job, if the caller may see it: its owner or an admin. Another client's job is
        NOT_FOUND, as if it did not exist."""
        job = await self._dispatcher.job(_require_job_id(job_id))
        if not current_principal().may_see(job.owner):
            raise NotFoundError(f"no job with id {clip(job_id)}")
        return job

    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: Context
    ) -> jobs_pb2.GetJobResponse:
        return jobs_pb2.GetJobResponse(job=job_to_proto(await self._visible(request.job_id)))

    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.WatchJobResponse]:
        job_id = (await self._visible(request.job_id)).job_id
        with self._watchers.open(current_principal().client_id or context.peer()):
            async for view in self._events.watch(
                job_id, request.after_sequence, self._dispatcher.job
            ):
                yield jobs_pb2.WatchJobResponse(
                    sequence=view.version,
                    job=job_to_proto(view),
                    tokens_per_second=view.tokens_per_second,
                )

    async def GetJobResult(
        self, request: jobs_pb2.GetJobResultRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.GetJobResultResponse]:
        job = await self._visible(request.job_id)
        async for doc in self._store.results(job.job_id):
            yield jobs_pb2.GetJobResultResponse(
                document=document_result_to_proto(doc, as_tensors=request.tensors)
            )

    async def results_when_done(
        self, job_id: str, context: Context
    ) -> tuple[jobs_pb2.Job, list[jobs_pb2.DocumentResult]]:
        """Wait for the caller's job to end, then read its results as tensors (none unless it
        succeeded: the caller checks its state). A caller that goes away first cancels it."""
        try:
            job = job_to_proto(await self._visible(job_id))
            async for event in self.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), context):
                job = event.job
            if job.state != jobs_pb2.JOB_STATE_SUCCEEDED:
                return job, []
            request = jobs_pb2.GetJobResultRequest(job_id=job_id, tensors=True)
            return job, [r.document async for r in self.GetJobResult(request, context)]
        except asyncio.CancelledError:
            cancel = jobs_pb2.CancelJobRequest(job_id=job_id)
            await asyncio.shield(self.CancelJob(cancel, context))
            raise

    async def StreamJobOutput(
        self, request: jobs_pb2.StreamJobOutputRequest, context: Context
    ) -> AsyncIterator[jobs_pb2.StreamJobOutputResponse]:
        job_id = (await self._visible(request.job_id)).job_id

        async def running(job_id: str) -> bool:
            return not (await self._dispatcher.job(job_id)).state.finished

        with self._watchers.open(current_principal().client_id or context.peer()):
            async for part in self._dispatcher.outputs.read(job_id, running):
                yield jobs_pb2.StreamJobOutputResponse(
                    task=part.task, sequence=part.sequence, output=part.output
                )

    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: Context
    ) -> jobs_pb2.CancelJobResponse:
        job = await self._dispatcher.cancel((await self._visible(request.job_id)).job_id)
        return jobs_pb2.CancelJobResponse(job=job_to_proto(job))

    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: Context
    ) -> jobs_pb2.ListJobsResponse:
        size = JOB_PAGES.resolve(request.page_size, request.limit)
        principal = current_principal()
        if request.all_clients and not principal.admin:
            raise PermissionDeniedError("listing every client's jobs needs an admin API key")
        owner = None if request.all_clients else principal.client_id
        jobs, next_token = await self._listing.page(size, request.page_token, owner)
        return jobs_pb2.ListJobsResponse(
            jobs=[job_to_proto(j) for j in jobs], next_page_token=next_token
        )

    async def ListNodes(
        self, request: jobs_pb2.ListNodesRequest, context: Context
    ) -> jobs_pb2.ListNodesResponse:
        size = NODE_PAGES.resolve(request.page_size)
        nodes, more = await self._registry.page(
            self._dispatcher.lanes.running(),
            await self._ledger.withheld(),
            size,
            after_node(request.page_token),
        )
        return jobs_pb2.ListNodesResponse(
            nodes=[node_to_proto(n) for n in nodes],
            next_page_token=node_token(nodes[-1].node_id) if more else "",
        )


#: Seconds a node has, after opening its lease stream, to say hello.
HELLO_TIMEOUT_S = 10.0


class NodeServicer(nodes_pb2_grpc.NodeServiceServicer):
    def __init__(
        self,
        dispatcher: Dispatcher,
        registry: NodeRegistry,
    ) -> None:
        self._dispatcher = dispatcher
        self._registry = registry

    async def GetChallenge(
        self, request: nodes_pb2.GetChallengeRequest, context: Context
    ) -> nodes_pb2.GetChallengeResponse:
        message, nonce = self._registry.challenge(request.address)
        return nodes_pb2.GetChallengeResponse(message=message, nonce=nonce)

    async def Register(
        self, request: nodes_pb2.RegisterRequest, context: Context
    ) -> nodes_pb2.RegisterResponse:
        node_id, token = await self._registry.register(registration_from_proto(request))
        logger.info("node %s registered (%s)", node_id, ", ".join(m.name for m in request.models))
        return nodes_pb2.RegisterResponse(
            node_id=node_id,
            session_token=token,
            heartbeat_interval_ms=round(1000 * self._registry.heartbeat_interval(node_id)),
        )

    async def Heartbeat(
        self, request: nodes_pb2.HeartbeatRequest, context: Context
    ) -> nodes_pb2.HeartbeatResponse:
        interval = self._registry.heartbeat(request.node_id, request.session_token)
        return nodes_pb2.HeartbeatResponse(heartbeat_interval_ms=round(1000 * interval))

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
                if reader.done():
                    reader.result()  # re-raise what ended the reader, if anything
                    return
                if not lane.outbox.empty():  # sent at once: no task to wait on
                    message = lane.outbox.get_nowait()
                else:
                    get = asyncio.create_task(lane.outbox.get())
                    done, _ = await asyncio.wait({get, reader}, return_when=asyncio.FIRST_COMPLETED)
                    if get not in done:
                        get.cancel()
                        reader.result()  # re-raise what ended the reader, if anything
                        return
                    message = get.result()
                if message is None:
                    return
                yield lane_message_to_proto(message)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
            # The call may be cancelled (the node hung up): finish the state change regardless.
            await asyncio.shield(self._dispatcher.detach(lane, DetachReason.STREAM_CLOSED))
            self._registry.drop(lane.node_id, lane.token)

    async def _read(self, lane: NodeLane, requests: AsyncIterator[nodes_pb2.LeaseRequest]) -> None:
        """Apply what the node reports. Each change is shielded: cancelling the reader (the node
        hung up) must not interrupt a shard between the database and the dispatcher's memory."""
        async for request in requests:
            self._registry.touch(lane.node_id)
            kind = request.WhichOneof("message")
            if kind == "result":
                output = output_from_proto(request.result)
                await asyncio.shield(self._dispatcher.complete(lane, output))
            elif kind == "failure":
                await asyncio.shield(
                    self._dispatcher.fail(lane, request.failure.shard_id, request.failure.error)
                )
            elif kind == "stored":
                s = request.stored
                self._dispatcher.lanes.block_kept(lane.node_id, s.cid, s.ok, s.error)
            elif kind == "proof":
                a = request.proof
                self._dispatcher.lanes.audit_answered(
                    lane.node_id, a.cid, a.nonce, AuditAnswer(a.proof, a.error)
                )
            elif kind == "progress":
                part = request.progress
                shard = lane.inflight.get(part.shard_id)  # only a shard the node holds
                if shard is not None:
                    self._dispatcher.outputs.add(
                        shard.job_id, shard.index, lane.node_id, part.sequence, part.output
                    )
            elif kind == "release":
                await asyncio.shield(
                    self._dispatcher.hand_back(lane, list(request.release.shard_ids))
                )
            else:
                raise InvalidArgumentError(
                    f"unexpected {kind or 'empty'} message on a lease stream"
                )
