"""Job and EmbedJob: a submitted job, followed and collected through its `Client`."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from tokenweave.client._channel import translate as _translate
from tokenweave.client._convert import (
    DocumentEmbedding,
    DocumentOutput,
    JobInfo,
    JobStatus,
    document_embedding,
)
from tokenweave.errors import FailedPreconditionError, ResourceExhaustedError, UnavailableError

if TYPE_CHECKING:
    from tokenweave.client._client import Client

#: How often a job is read when the coordinator has no watch stream to spare.
POLL_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class EmbedResult:
    job: JobInfo
    documents: tuple[DocumentEmbedding, ...]


class Job:
    """A submitted job: follow it with `watch()`, collect it with `outputs()`."""

    def __init__(self, client: Client, info: JobInfo) -> None:
        self._client = client
        self.info = info

    @property
    def id(self) -> str:
        return self.info.job_id

    def refresh(self) -> JobInfo:
        self.info = self._client._get(self.id)
        return self.info

    def watch(self, *, reconnect_for: float = 60.0) -> Iterator[JobInfo]:
        """Yield the job on every change until it finishes.

        A dropped stream (coordinator restarting, network blip) is resumed transparently from
        the last event seen, retrying with jittered backoff for up to `reconnect_for` seconds.
        """
        after = 0
        delay = 0.25
        deadline: float | None = None
        while True:
            try:
                for info in self._client._watch(self.id, after):
                    after = info.sequence
                    deadline = None
                    delay = 0.25
                    self.info = info
                    yield info
                return
            except grpc.RpcError as exc:
                error = _translate(exc)
                if isinstance(error, ResourceExhaustedError):
                    # The coordinator's cap on watch streams: follow the job by polling instead.
                    yield from self._poll()
                    return
                if not isinstance(error, UnavailableError):
                    raise error from exc
                deadline = deadline or time.monotonic() + reconnect_for
                if time.monotonic() > deadline:
                    raise error from exc
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 5.0)

    def _poll(self) -> Iterator[JobInfo]:
        """`watch` by GetJob every `POLL_INTERVAL_S`: each change, until the job finishes."""
        last = None
        while True:
            info = self.refresh()
            seen = (info.state, info.shards_done, info.tokens_processed)
            if seen != last:
                last = seen
                yield info
            if info.state.finished:
                return
            time.sleep(POLL_INTERVAL_S)

    def wait(self) -> JobInfo:
        for _ in self.watch():
            pass
        return self.info

    def outputs(self) -> list[DocumentOutput]:
        """Wait for the job to finish and return each document's result; raises if it did not
        succeed."""
        info = self.wait()
        if info.status is not JobStatus.SUCCEEDED:
            reason = f": {info.error}" if info.error else ""
            raise FailedPreconditionError(f"job {self.id} {info.status}{reason}")
        return list(self._client._results(self.id))

    def cancel(self) -> JobInfo:
        self.info = self._client.cancel(self.id)
        return self.info


class EmbedJob(Job):
    """An embedding job: `result()` gives each document's window and document embeddings."""

    def result(self) -> EmbedResult:
        """Wait for the job to finish and return its embeddings; raises if it did not succeed."""
        if self.info.workload != "embed":
            raise FailedPreconditionError(
                f"job {self.id} is a {self.info.workload!r} job, not an embedding: use outputs()"
            )
        documents = tuple(document_embedding(d) for d in self.outputs())
        return EmbedResult(job=self.info, documents=documents)
