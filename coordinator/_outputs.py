"""JobOutputs: the parts of tasks' outputs that nodes send while they run, for the job's client.

A generation's tokens reach the client as they are made: the node sends each part on its lease
stream (`ShardProgress`), the node servicer hands it here if the node holds that shard, and
`StreamJobOutput` readers get every part of the job from the first. Parts live in memory,
bounded: `max_part_bytes` a part, `max_job_bytes` a job (past them, parts are dropped and the
client gets the rest with the result), `max_bytes` in all (the oldest jobs' parts are forgotten
first); a reader that sees its job finished forgets them too. One run per task streams: the
first node whose part arrives (a verification copy or a backup elsewhere stays silent), its
parts in order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

#: Parts kept in all, for one job, and one part.
MAX_BYTES = 64 * 1024 * 1024
MAX_JOB_BYTES = 4 * 1024 * 1024
MAX_PART_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Part:
    task: int
    sequence: int
    output: bytes


@dataclass
class _Job:
    parts: list[Part] = field(default_factory=list)
    size: int = 0
    #: Task → (the node whose run streams it, the sequence it sends next).
    streams: dict[int, tuple[str, int]] = field(default_factory=dict)
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
        node, expected = job.streams.get(task, (node_id, 0))
        if node != node_id or sequence != expected:
            return False
        if len(output) > self._max_part or job.size + len(output) > self._max_job:
            return False
        job.streams[task] = (node_id, expected + 1)
        job.parts.append(Part(task, sequence, output))
        job.size += len(output)
        self._size += len(output)
        while self._size > self._max_bytes and len(self._jobs) > 1:
            self.finished(next(iter(self._jobs)))
        job.changed.set()
        job.changed = asyncio.Event()
        return True

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
