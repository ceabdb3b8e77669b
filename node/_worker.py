"""The task worker: shards leased to this node, run one at a time.

* `ShardWorker.run(assignment) -> LeaseRequest` — one shard in, the message to send back out
  (a ShardResult, or a ShardFailure saying why). What the work *is* belongs to the shard's
  workload (`Workload.run`), given the node's `NodeRuntime` (its models, its dataset reader).
* `ShardQueue` — one lease session's assignments: queued in arrival order, cancelled ones
  skipped, one run at a time through a `RunShard`, answers written through a `Send`; on
  drain, the queued ones are handed back and the running one gets a grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tokenweave import workloads
from tokenweave.errors import TokenweaveError
from tokenweave.models import Generator, OnnxSession
from tokenweave.node._runtime import NodeResources
from tokenweave.v1 import nodes_pb2
from tokenweave.workloads import DocumentSource

logger = logging.getLogger(__name__)

#: Writes one message on the lease stream.
Send = Callable[[nodes_pb2.LeaseRequest], Awaitable[None]]
#: Runs one shard (sending its progress, told whether it was taken back) and returns the message
#: that reports it.
RunShard = Callable[
    [nodes_pb2.ShardAssignment, Send, Callable[[], bool]], Awaitable[nodes_pb2.LeaseRequest]
]


def _failure(shard_id: str, error: str) -> nodes_pb2.LeaseRequest:
    return nodes_pb2.LeaseRequest(failure=nodes_pb2.ShardFailure(shard_id=shard_id, error=error))


class ShardWorker:
    """Runs shards through their workloads; lives as long as the daemon."""

    def __init__(self, runtime: NodeResources, provider: str) -> None:
        self._runtime = runtime
        self._provider = provider
        self.shards_done = 0

    async def run(
        self,
        assignment: nodes_pb2.ShardAssignment,
        send: Send | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> nodes_pb2.LeaseRequest:
        """Run `assignment`; the result to report, or the failure (never raises for a bad
        shard: an exception becomes a ShardFailure naming it). Parts of the output the workload
        reports while it runs go out through `send` at once."""
        shard_id = assignment.shard_id
        try:
            workload = workloads.get(assignment.workload)
            self._runtime.check(assignment.model, assignment.model_sha256)
        except TokenweaveError as exc:
            return _failure(shard_id, exc.message)
        started = time.perf_counter()
        try:
            run = await asyncio.to_thread(
                workload.run,
                assignment.model,
                assignment.model_sha256,
                assignment.payload,
                _TaskRuntime(self._runtime, shard_id, send, asyncio.get_running_loop(), cancelled),
            )
        except Exception as exc:
            logger.exception("shard %s failed", shard_id)
            return _failure(shard_id, f"{type(exc).__name__}: {exc}")
        wall = time.perf_counter() - started
        self.shards_done += 1
        logger.info(
            "shard %s (%s): %d tokens in %.2f s (%.0f tokens/s)",
            shard_id,
            workload.name,
            run.tokens,
            wall,
            run.tokens / wall if wall else 0.0,
        )
        return nodes_pb2.LeaseRequest(
            result=nodes_pb2.ShardResult(
                shard_id=shard_id,
                output=run.output,
                tokens=run.tokens,
                wall_seconds=wall,
                digest=hashlib.sha256(run.output).hexdigest(),
                provider=self._provider,
            )
        )


class ShardQueue:
    """One session's assignments. `start()` the loop, feed it with `assign`/`cancel`, and
    `drain()` it once to stop. Up to `concurrency` shards run at once (a GPU node's, whose
    windows meet in one batch); each one's answer is sent as soon as it is done."""

    def __init__(self, run: RunShard, send: Send, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._run = run
        self._send = send
        self._queue: asyncio.Queue[str | nodes_pb2.ShardAssignment] = asyncio.Queue()
        self._cancelled: set[str] = set()
        self._slots = asyncio.Semaphore(concurrency)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = asyncio.Event()
        self._failed: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> tuple[str, ...]:
        """The shards being run now, in the order they started."""
        return tuple(self._running)

    def assign(self, assignment: nodes_pb2.ShardAssignment) -> None:
        self._queue.put_nowait(assignment)

    def cancel(self, shard_id: str) -> None:
        """The coordinator took `shard_id` back: skip it if it has not started; a running one
        sees it through its runtime's `cancelled()`."""
        self._cancelled.add(shard_id)

    def start(self) -> asyncio.Task[None]:
        """The loop that runs shards; it ends only by raising (a failed send) or by `drain`."""
        if self._task is None:
            self._failed = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._work())
        return self._task

    async def drain(self, grace_s: float) -> None:
        """Hand back what has not started, let the running shards finish within `grace_s`
        (else hand them back too), and stop the loop."""
        self._draining.set()
        await self._release_queued()
        if self._running:
            logger.info("finishing shards %s before exiting", ", ".join(self._running))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace_s)
        cut_off = list(self._running.items())  # still running after the grace period
        tasks = [task for _, task in cut_off]
        if self._task is not None:
            tasks.append(self._task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for shard_id, _ in cut_off:  # the coordinator gives them to other nodes
            self._queue.put_nowait(shard_id)
        await self._release_queued()

    async def _work(self) -> None:
        while not self._draining.is_set():
            await self._until_failed(asyncio.ensure_future(self._slots.acquire()))
            get = asyncio.ensure_future(self._queue.get())
            try:
                assignment = await self._until_failed(get)
            except BaseException:
                self._slots.release()
                if get.done() and not get.cancelled() and get.exception() is None:
                    self._queue.put_nowait(get.result())  # taken just as the loop ended
                raise
            if self._draining.is_set():
                self._queue.put_nowait(assignment)
                self._slots.release()
                return
            if isinstance(assignment, str) or assignment.shard_id in self._cancelled:
                self._slots.release()
                continue
            self._idle.clear()
            self._running[assignment.shard_id] = asyncio.create_task(self._one(assignment))

    async def _one(self, assignment: nodes_pb2.ShardAssignment) -> None:
        shard_id = assignment.shard_id
        try:
            taken_back = functools.partial(self._cancelled.__contains__, shard_id)
            await self._send(await self._run(assignment, self._send, taken_back))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a failed send: the loop ends with it
            loop_running = self._task is not None and not self._task.done()
            if loop_running and self._failed is not None and not self._failed.done():
                self._failed.set_exception(exc)
            else:  # the session is over already; the coordinator runs the shard again
                logger.info("shard %s: its answer could not be sent (%s)", shard_id, exc)
        finally:
            del self._running[shard_id]
            self._slots.release()
            if not self._running:
                self._idle.set()

    async def _until_failed(self, task: asyncio.Future[Any]) -> Any:
        """`task`'s result, unless a shard's send fails first (then its error is raised)."""
        assert self._failed is not None
        try:
            await asyncio.wait({task, self._failed}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            self._failed.result()  # raises the send's error
        return task.result()

    async def _release_queued(self) -> None:
        queued = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            queued.append(item if isinstance(item, str) else item.shard_id)
        if queued:
            await self._send(
                nodes_pb2.LeaseRequest(release=nodes_pb2.ShardRelease(shard_ids=queued))
            )
            logger.info("handed back %d shards", len(queued))


class _TaskRuntime:
    """The node's resources as one task sees them, with `report` sending its parts in order
    on the lease stream (from the worker thread, without waiting)."""

    def __init__(
        self,
        resources: NodeResources,
        shard_id: str,
        send: Send | None,
        loop: asyncio.AbstractEventLoop,
        cancelled: Callable[[], bool],
    ) -> None:
        self.cancelled = cancelled
        self._resources = resources
        self._shard_id = shard_id
        self._send = send
        self._loop = loop
        self._sequence = 0

    def model(self, name: str, sha256: str) -> Any:
        return self._resources.model(name, sha256)

    def generator(self, name: str, sha256: str) -> Generator:
        return self._resources.generator(name, sha256)

    def onnx(self, name: str, sha256: str) -> OnnxSession:
        return self._resources.onnx(name, sha256)

    def read_document(self, source: DocumentSource, label: str) -> str:
        return self._resources.read_document(source, label)

    def read_bytes(self, source: DocumentSource, label: str) -> bytes:
        return self._resources.read_bytes(source, label)

    def report(self, output: bytes) -> None:
        if self._send is None:
            return
        message = nodes_pb2.LeaseRequest(
            progress=nodes_pb2.ShardProgress(
                shard_id=self._shard_id, sequence=self._sequence, output=output
            )
        )
        self._sequence += 1
        send = self._send

        async def write() -> None:
            await send(message)

        # In order: the lease stream's write lock queues the writes in the order they come.
        asyncio.run_coroutine_threadsafe(write(), self._loop)
