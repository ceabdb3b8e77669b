"""A workload's plan as database rows: the job, its documents and its shards, with what
placement needs of each shard (bytes of dataset it reads, the nodes holding them all).

A plan is the workload's, so it is checked before it is stored: it must account for every
document and give nodes work, or it is a defect of the workload (INTERNAL), not of the job.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from tokenweave.coordinator._db import (
    Base,
    DocumentRow,
    JobRow,
    ShardPayloadRow,
    ShardRow,
    utcnow,
)
from tokenweave.coordinator._views import JobRequest, ShardState
from tokenweave.errors import InvalidArgumentError, TokenweaveError, clip
from tokenweave.types import JobState
from tokenweave.workloads import DocumentInput, DocumentSource, JobPlan, TaskPlan

#: Stages a job may have (ask: a map and reduce levels, each level dividing the notes).
MAX_STAGES = 32


@dataclass(frozen=True, slots=True)
class PlannedRows:
    job: JobRow
    documents: list[DocumentRow]
    shards: list[ShardRow]


def document_label(index: int, name: str) -> str:
    return f"document {index}" + (f" ({clip(name)})" if name else "")


def _source_json(source: DocumentSource) -> dict[str, object]:
    return {
        "file": source.file,
        "start": source.start,
        "end": source.end,
        "text_field": source.text_field,
    }


def _locality(
    documents: Sequence[DocumentInput], holders: Mapping[str, frozenset[str]], task: TaskPlan
) -> tuple[int, list[str]]:
    """Bytes of dataset a task reads, and the nodes that hold every block it reads."""
    sources = [source for d in task.reads if (source := documents[d].source) is not None]
    if not sources:
        return 0, []
    blocks = {b for source in sources for b in source.blocks}
    local = frozenset.intersection(*(holders.get(b, frozenset()) for b in blocks))
    return sum(source.end - source.start for source in sources), sorted(local)


def check_plan(workload: str, plan: JobPlan, documents: int) -> None:
    """A workload's plan must account for every document and give nodes work; anything else is
    a defect of the workload (INTERNAL), not of the job."""
    if len(plan.documents) != documents:
        raise TokenweaveError(
            f"workload {workload} planned {len(plan.documents)} documents for {documents}"
        )
    if not plan.tasks:
        raise TokenweaveError(f"workload {workload} planned no tasks")
    for task in plan.tasks:
        if task.cost <= 0 or any(not 0 <= d < documents for d in task.reads):
            raise TokenweaveError(f"workload {workload} planned a task with a bad cost or read")


def shard_row(
    job_id: str,
    index: int,
    stage: int,
    task: TaskPlan,
    owner: str | None,
    read_bytes: int = 0,
    local_nodes: Sequence[str] = (),
) -> ShardRow:
    """A new, pending shard of a job, `owner`'s (None: up for claiming)."""
    return ShardRow(
        shard_id=f"{job_id}-{index}",
        job_id=job_id,
        index=index,
        stage=stage,
        payload_row=ShardPayloadRow(payload=task.payload),
        detail=task.detail,
        cost=task.cost,
        state=ShardState.PENDING,
        node_id=None,
        attempts=0,
        leased_at=None,
        output=None,
        completed_at=None,
        read_bytes=read_bytes,
        local_nodes=list(local_nodes),
        owner=owner,
    )


def check_stage(workload: str, tasks: Sequence[TaskPlan], stage: int) -> None:
    """A later stage's tasks cost work and carry their input (they read no dataset), and a job
    has at most MAX_STAGES stages (a workload whose stages never end fails its job)."""
    if stage >= MAX_STAGES:
        raise TokenweaveError(f"workload {workload} planned more than {MAX_STAGES} stages")
    for task in tasks:
        if task.cost <= 0 or task.reads:
            raise TokenweaveError(
                f"workload {workload} planned a next-stage task with a bad cost or a dataset read"
            )


def planned_rows(
    request: JobRequest, plan: JobPlan, workload: str, model_sha256: str, owner: str | None
) -> PlannedRows:
    """The rows of a new, queued job (not yet added to any session); its shards `owner`'s
    (None: up for claiming)."""
    check_plan(workload, plan, len(request.documents))
    job_id = uuid.uuid4().hex
    job = JobRow(
        job_id=job_id,
        state=JobState.QUEUED,
        workload=workload,
        options=dict(plan.options),
        model=request.model,
        model_sha256=model_sha256,
        documents=len(plan.documents),
        tokens=plan.tokens,
        items=plan.items,
        shards_total=len(plan.tasks),
        shards_done=0,
        tokens_processed=0,
        created_at=utcnow(),
        started_at=None,
        finished_at=None,
        error="",
        version=1,
        dataset=request.dataset,
        owner=request.owner,
    )
    shard_rows = []
    for index, task in enumerate(plan.tasks):
        read_bytes, local_nodes = _locality(request.documents, request.holders, task)
        shard_rows.append(shard_row(job_id, index, 0, task, owner, read_bytes, local_nodes))
    documents = [
        DocumentRow(
            job_id=job_id,
            index=i,
            name=doc.name,
            tokens=doc.tokens,
            detail=doc.detail,
            result=None,
            source=None if given.source is None else _source_json(given.source),
        )
        for i, (doc, given) in enumerate(zip(plan.documents, request.documents, strict=True))
    ]
    return PlannedRows(job, documents, shard_rows)


#: Rows a statement inserts at most; the event loop gets a turn between statements, so a job of
#: 100,000 shards does not stall every node's lease stream while it is stored.
INSERT_CHUNK = 2000


def _values(row: Base, table: Table) -> dict[str, Any]:
    """The column values set on a new ORM row (unset ones take the column's default)."""
    return {c.key: row.__dict__[c.key] for c in table.columns if c.key in row.__dict__}


async def insert_rows(
    session: AsyncSession, documents: Sequence[DocumentRow], shards: Sequence[ShardRow]
) -> None:
    """Insert a plan's documents and shards (with their payloads) through Core, a chunk a
    statement: the ORM's unit of work took ~15 s of the event loop for 100,000 shards."""
    tables = (
        cast(Table, DocumentRow.__table__),
        cast(Table, ShardRow.__table__),
        cast(Table, ShardPayloadRow.__table__),
    )
    for start in range(0, max(len(documents), len(shards)), INSERT_CHUNK):
        docs = documents[start : start + INSERT_CHUNK]
        chunk = shards[start : start + INSERT_CHUNK]
        if docs:
            await session.execute(insert(tables[0]), [_values(d, tables[0]) for d in docs])
        if chunk:
            await session.execute(insert(tables[1]), [_values(s, tables[1]) for s in chunk])
            await session.execute(
                insert(tables[2]),
                [
                    {
                        "shard_id": s.shard_id,
                        "payload": s.payload_row.payload,
                        "external": bool(s.payload_row.external),
                    }
                    for s in chunk
                ],
            )
        await asyncio.sleep(0)


#: The most bytes of tensors one document (an inference request) may hold.
MAX_TENSOR_BYTES = 64 * 1024 * 1024


def check_documents(
    documents: Sequence[DocumentInput], max_documents: int, max_document_bytes: int
) -> None:
    """What every job's documents must meet, whatever its workload."""
    if not documents:
        raise InvalidArgumentError("the job has no documents")
    if len(documents) > max_documents:
        raise InvalidArgumentError(
            f"the job has {len(documents)} documents; the limit is {max_documents}"
        )
    for i, doc in enumerate(documents):
        if not doc.text.strip() and not doc.data:
            raise InvalidArgumentError(f"{document_label(i, doc.name)} is empty")
        size = len(doc.text.encode())
        if size > max_document_bytes:
            raise InvalidArgumentError(
                f"{document_label(i, doc.name)} is {size} bytes; the limit is "
                f"{max_document_bytes} bytes (coordinator --max-document-bytes)"
            )
        if len(doc.data) > MAX_TENSOR_BYTES:  # a request's tensors: bounded as a message
            raise InvalidArgumentError(
                f"{document_label(i, doc.name)} holds {len(doc.data)} bytes of tensors; the "
                f"limit is {MAX_TENSOR_BYTES} bytes a request"
            )
