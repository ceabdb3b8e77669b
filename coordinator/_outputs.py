"""JobOutputs: the parts of tasks' outputs that nodes send while they run, for the job's client.

A generation's tokens reach the client as they are made: the node sends each part on its lease
stream (`ShardProgress`), the node servicer hands it here if the node holds that shard, and
`StreamJobOutput` readers get every part of the job from the first. Parts live in memory,
bounded: `max_part_bytes` a part, `max_job_bytes` a job (past them, parts are dropped and the
client gets the rest with the result), `max_bytes` in all (the oldest jobs' parts are forgotten
first); a reader that sees its job finished forgets them too. One run per task streams: the
first node whose part arrives (a verification copy or a backup elsewhere stays silent), its
parts in order. When that run is lost and the task is leased again, the stream is handed over
(`carry_on`): the new run carries on from the parts sent so far, and its parts follow them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tokenweave import workloads
from tokenweave.coordinator._views import QueuedShard

logger = logging.getLogger(__name__)

#: Parts kept in all, for one job, and one part.
MAX_BYTES = 64 * 1024 * 1024
MAX_JOB_BYTES = 4 * 1024 * 1024
MAX_PART_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    task: int
    sequence: int
    output: bytes


@dataclass(slots=True)
class _Stream:
    #: The node whose run streams the task, the sequence it sends next, and how many parts
    #: of the task came before that run's (from runs that were lost).
    node: str
    expected: int = 0
    base: int = 0


@dataclass
class _Job:
    parts: list[Part] = field(default_factory=list)
    size: int = 0
    streams: dict[int, _Stream] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class JobOutputs:
    def __init__(
        self,
        max_bytes: int = MAX_BYTES,
        max_job_bytes: int = MAX_JOB_BYTES,
        max_part_bytes: int = MAX_PART_BYTES,
    ) -> None:
        self._jobs: dict[str, _Job] = {}  # oldest first
        self._max_bytes = max_bytes
        self._max_job = max_job_bytes
        self._max_part = max_part_bytes
        self._size = 0

    def add(self, job_id: str, task: int, node_id: str, sequence: int, output: bytes) -> bool:
        """Keep a part; False (dropped) when it is not the next part of the task's streaming
        run, or past the bounds."""
        job = self._jobs.setdefault(job_id, _Job())
        stream = job.streams.setdefault(task, _Stream(node_id))
        if stream.node != node_id or sequence != stream.expected:
            return False
        if len(output) > self._max_part or job.size + len(output) > self._max_job:
            return False
        stream.expected += 1
        job.parts.append(Part(task, stream.base + sequence, output))
        job.size += len(output)
        self._size += len(output)
        while self._size > self._max_bytes and len(self._jobs) > 1:
            self.finished(next(iter(self._jobs)))
        job.changed.set()
        job.changed = asyncio.Event()
        return True

    def carry_on(self, shard: QueuedShard, payload: bytes, node_id: str) -> bytes:
        """The payload of a run of record of `shard` on `node_id`: if a lost run streamed the
        task, the workload's `resume` of it from the parts sent, and the stream is handed over."""
        parts = self.hand_over(shard.job_id, shard.index, node_id)
        if not parts:
            return payload
        logger.info(
            "shard %s carries on from the %d parts its lost run streamed, on %s",
            *(shard.shard_id, len(parts), node_id),
        )
        return workloads.get(shard.workload).resume(payload, parts)

    def hand_over(self, job_id: str, task: int, node_id: str) -> list[bytes]:
        """The task is leased to `node_id`: if a lost run streamed it, the parts it sent (for
        the new run to carry on from), and from now on the new run's parts, numbered from 0,
        follow them; the lost run's are dropped. [] when nothing was streamed."""
        job = self._jobs.get(job_id)
        if job is None or task not in job.streams:
            return []
        parts = [part.output for part in job.parts if part.task == task]
        job.streams[task] = _Stream(node_id, base=len(parts))
        return parts

    def finished(self, job_id: str) -> None:
        """The job ended: wake its readers (they see it is finished) and forget its parts."""
        job = self._jobs.pop(job_id, None)
        if job is not None:
            self._size -= job.size
            job.changed.set()

    async def read(
        self, job_id: str, running: Callable[[str], Awaitable[bool]], poll_s: float = 1.0
    ) -> AsyncIterator[Part]:
        """Every part of the job from the first, as they come, until `running(job_id)` is
        False (checked on every wake, and every `poll_s`)."""
        sent = 0
        while True:
            job = self._jobs.get(job_id)
            parts = job.parts if job is not None else []
            while sent < len(parts):
                yield parts[sent]
                sent += 1
            if not await running(job_id):
                self.finished(job_id)
                return
            job = self._jobs.setdefault(job_id, _Job())
            if sent < len(job.parts):
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(job.changed.wait(), poll_s)
