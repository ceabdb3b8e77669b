"""JobStore: jobs, documents and shards in the database.

Every change to a job goes through here, in one transaction, and bumps the job's version so that
watchers can resume. ORM rows never leave this module: callers get frozen views.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._db import (
    DocumentRow,
    JobRow,
    LedgerRow,
    NodeRow,
    ShardRow,
    VerificationRow,
    utcnow,
)
from tokenweave.coordinator._merge import document_embedding
from tokenweave.coordinator._metering import PriceList
from tokenweave.coordinator._nodes import next_reputation
from tokenweave.coordinator._views import (
    DocumentInput,
    DocumentResult,
    DocumentSource,
    JobRequest,
    JobState,
    JobView,
    NodeShare,
    ShardOutput,
    ShardState,
    WindowResult,
)
from tokenweave.coordinator._windows import ShardPlan, WindowPlan, WindowSpan, group_into_shards
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError, clip


@dataclass(frozen=True, slots=True)
class JobLimits:
    max_document_bytes: int
    max_documents: int
    default_overlap: int
    windows_per_shard: int


@dataclass(frozen=True, slots=True)
class QueuedShard:
    """A shard waiting for a node, with what the dispatcher needs to place and send it."""

    shard_id: str
    job_id: str
    model: str
    model_sha256: str
    model_tokens: int
    spans: tuple[WindowSpan, ...]
    #: Dataset jobs: bytes of the documents the node reads, and the nodes holding them all.
    read_bytes: int = 0
    local_nodes: frozenset[str] = frozenset()


def _job_view(row: JobRow, nodes: Sequence[NodeShare] = ()) -> JobView:
    return JobView(
        job_id=row.job_id,
        state=JobState(row.state),
        model=row.model,
        window=row.window,
        overlap=row.overlap,
        documents=row.documents,
        tokens=row.tokens,
        windows=row.windows,
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
    )


def _queued(shard: ShardRow, job: JobRow) -> QueuedShard:
    return QueuedShard(
        shard_id=shard.shard_id,
        job_id=shard.job_id,
        model=job.model,
        model_sha256=job.model_sha256,
        model_tokens=shard.model_tokens,
        spans=tuple(WindowSpan(d, s, e) for d, s, e in shard.spans),
        read_bytes=shard.read_bytes,
        local_nodes=frozenset(shard.local_nodes),
    )


def _locality(
    documents: Sequence[DocumentInput], holders: Mapping[str, frozenset[str]], shard: ShardPlan
) -> tuple[int, list[str]]:
    """Bytes of dataset a shard reads, and the nodes that hold every block it reads."""
    sources = [
        source
        for d in sorted({w.document for w in shard.windows})
        if (source := documents[d].source) is not None
    ]
    if not sources:
        return 0, []
    blocks = {b for source in sources for b in source.blocks}
    local = frozenset.intersection(*(holders.get(b, frozenset()) for b in blocks))
    return sum(source.end - source.start for source in sources), sorted(local)


async def _window_embeddings(
    session: AsyncSession, job_id: str
) -> tuple[dict[int, list[WindowSpan]], dict[int, list[npt.NDArray[np.float32]]]]:
    """Each document's window spans and embeddings, in order, from the job's shard results."""
    shards = await session.scalars(
        select(ShardRow).where(ShardRow.job_id == job_id).order_by(ShardRow.index)
    )
    spans: dict[int, list[WindowSpan]] = defaultdict(list)
    rows: dict[int, list[npt.NDArray[np.float32]]] = defaultdict(list)
    for shard in shards:
        if shard.embeddings is None:
            raise FailedPreconditionError(f"shard {shard.shard_id} has no result")
        matrix = np.frombuffer(shard.embeddings, dtype="<f4").reshape(len(shard.spans), -1)
        for (doc, start, end), row in zip(shard.spans, matrix, strict=True):
            spans[doc].append(WindowSpan(doc, start, end))
            rows[doc].append(row)
    return spans, rows


class JobStore:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        catalog: ModelCatalog,
        limits: JobLimits,
        prices: PriceList,
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._limits = limits
        self._prices = prices

    # -- submission ---------------------------------------------------------------------------

    def _validate(self, request: JobRequest) -> WindowPlan:
        entry = self._catalog.get(request.model)
        if not request.documents:
            raise InvalidArgumentError("the job has no documents")
        if len(request.documents) > self._limits.max_documents:
            raise InvalidArgumentError(
                f"the job has {len(request.documents)} documents; the limit is "
                f"{self._limits.max_documents}"
            )
        for i, doc in enumerate(request.documents):
            label = f"document {i}" + (f" ({clip(doc.name)})" if doc.name else "")
            if not doc.text.strip():
                raise InvalidArgumentError(f"{label} is empty")
            size = len(doc.text.encode())
            if size > self._limits.max_document_bytes:
                raise InvalidArgumentError(
                    f"{label} is {size} bytes; the limit is {self._limits.max_document_bytes} "
                    "bytes (coordinator --max-document-bytes)"
                )
        window = entry.spec.default_window if request.window is None else request.window
        overlap = self._limits.default_overlap if request.overlap is None else request.overlap
        if request.overlap is None:
            overlap = min(overlap, max(window - 3, 0))
        return WindowPlan.validated(window, overlap, entry.spec.max_tokens)

    async def submit(self, request: JobRequest) -> tuple[JobView, list[QueuedShard]]:
        plan = self._validate(request)
        entry = self._catalog.get(request.model)
        tokenized = await asyncio.to_thread(
            self._catalog.tokenize, request.model, [d.text for d in request.documents]
        )
        spans: list[WindowSpan] = []
        for i, (doc, text) in enumerate(zip(request.documents, tokenized, strict=True)):
            if len(text.ids) == 0:
                label = f"document {i}" + (f" ({clip(doc.name)})" if doc.name else "")
                raise InvalidArgumentError(f"{label} has no tokens after tokenization")
            spans.extend(plan.spans(i, len(text.ids)))
        shards = group_into_shards(spans, self._limits.windows_per_shard)
        locality = [_locality(request.documents, request.holders, s) for s in shards]
        job_id = uuid.uuid4().hex
        now = utcnow()
        job = JobRow(
            job_id=job_id,
            state=JobState.QUEUED,
            model=request.model,
            model_sha256=entry.sha256,
            window=plan.window,
            overlap=plan.overlap,
            documents=len(request.documents),
            tokens=sum(len(t.ids) for t in tokenized),
            windows=len(spans),
            shards_total=len(shards),
            shards_done=0,
            tokens_processed=0,
            created_at=now,
            started_at=None,
            finished_at=None,
            error="",
            version=1,
            dataset=request.dataset,
        )
        shard_rows = [
            ShardRow(
                shard_id=f"{job_id}-{s.index}",
                job_id=job_id,
                index=s.index,
                spans=[[w.document, w.start, w.end] for w in s.windows],
                model_tokens=s.model_tokens,
                state=ShardState.PENDING,
                node_id=None,
                attempts=0,
                leased_at=None,
                embeddings=None,
                completed_at=None,
                read_bytes=read_bytes,
                local_nodes=local_nodes,
            )
            for s, (read_bytes, local_nodes) in zip(shards, locality, strict=True)
        ]
        async with self._sessions.begin() as session:
            session.add(job)
            await session.flush()
            session.add_all(
                DocumentRow(
                    job_id=job_id,
                    index=i,
                    name=doc.name,
                    tokens=len(text.ids),
                    token_ids=text.ids.astype("<u4").tobytes(),
                    offsets=text.offsets.astype("<u4").tobytes(),
                    embedding=None,
                    source=None
                    if doc.source is None
                    else {
                        "file": doc.source.file,
                        "start": doc.source.start,
                        "end": doc.source.end,
                        "text_field": doc.source.text_field,
                    },
                )
                for i, (doc, text) in enumerate(zip(request.documents, tokenized, strict=True))
            )
            session.add_all(shard_rows)
        return _job_view(job), [_queued(s, job) for s in shard_rows]

    # -- reads --------------------------------------------------------------------------------

    async def _node_shares(self, session: AsyncSession, job_id: str) -> list[NodeShare]:
        rows = await session.execute(
            select(ShardRow.node_id, NodeRow.address, func.count(), func.sum(ShardRow.model_tokens))
            .join(NodeRow, NodeRow.node_id == ShardRow.node_id)
            .where(ShardRow.job_id == job_id, ShardRow.state == ShardState.DONE)
            .group_by(ShardRow.node_id, NodeRow.address)
            .order_by(ShardRow.node_id)
        )
        return [NodeShare(n, a, int(c), int(t)) for n, a, c, t in rows.all() if n is not None]

    async def get(self, job_id: str) -> JobView:
        async with self._sessions() as session:
            row = await session.get(JobRow, job_id)
            if row is None:
                raise NotFoundError(f"no job with id {clip(job_id)}")
            return _job_view(row, await self._node_shares(session, job_id))

    async def recent(self, limit: int) -> list[JobView]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(JobRow).order_by(JobRow.created_at.desc()).limit(limit)
            )
            return [_job_view(r) for r in rows]

    async def document_tokens(self, job_id: str) -> list[npt.NDArray[np.uint32]]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(DocumentRow).where(DocumentRow.job_id == job_id).order_by(DocumentRow.index)
            )
            return [np.frombuffer(r.token_ids, dtype="<u4") for r in rows]

    async def document_sources(self, job_id: str) -> list[DocumentSource | None]:
        """Dataset jobs: where nodes read each document; None for documents sent inline."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(DocumentRow.source)
                .where(DocumentRow.job_id == job_id)
                .order_by(DocumentRow.index)
            )
            return [
                None
                if r is None
                else DocumentSource(
                    str(r["file"]),
                    int(str(r["start"])),
                    int(str(r["end"])),
                    str(r["text_field"]),
                )
                for r in rows
            ]

    async def pending_shards(self) -> list[QueuedShard]:
        """Shards of unfinished jobs that no node holds, oldest job first.

        Leases do not survive a coordinator restart: shards that were leased are pending again.
        """
        async with self._sessions.begin() as session:
            await session.execute(
                update(ShardRow)
                .where(ShardRow.state == ShardState.LEASED)
                .values(state=ShardState.PENDING, node_id=None, leased_at=None)
            )
            rows = await session.execute(
                select(ShardRow, JobRow)
                .join(JobRow, JobRow.job_id == ShardRow.job_id)
                .where(
                    ShardRow.state == ShardState.PENDING,
                    JobRow.state.in_([JobState.QUEUED, JobState.RUNNING]),
                )
                .order_by(JobRow.created_at, ShardRow.index)
            )
            return [_queued(shard, job) for shard, job in rows]

    async def results(self, job_id: str) -> AsyncIterator[DocumentResult]:
        """Each document's windows and embedding; only for a job that has succeeded."""
        job = await self.get(job_id)
        if job.state is not JobState.SUCCEEDED:
            raise FailedPreconditionError(
                f"job {job_id} is {job.state}; results exist once it has SUCCEEDED"
            )
        async with self._sessions() as session:
            spans, rows = await _window_embeddings(session, job_id)
            docs = list(
                await session.scalars(
                    select(DocumentRow)
                    .where(DocumentRow.job_id == job_id)
                    .order_by(DocumentRow.index)
                )
            )
        for doc in docs:
            assert doc.embedding is not None
            offsets = np.frombuffer(doc.offsets, dtype="<u4").reshape(-1, 2)
            yield DocumentResult(
                index=doc.index,
                name=doc.name,
                tokens=doc.tokens,
                windows=tuple(
                    WindowResult(
                        w.start, w.end, int(offsets[w.start, 0]), int(offsets[w.end - 1, 1]), row
                    )
                    for w, row in zip(spans[doc.index], rows[doc.index], strict=True)
                ),
                embedding=np.frombuffer(doc.embedding, dtype="<f4"),
            )

    # -- changes ------------------------------------------------------------------------------

    async def mark_leased(self, shard_id: str, node_id: str) -> bool:
        """Lease a pending shard to a node; False if it is no longer pending."""
        async with self._sessions.begin() as session:
            shard = await session.get(ShardRow, shard_id)
            if shard is None:
                raise NotFoundError(f"no shard with id {shard_id!r}")
            if shard.state != ShardState.PENDING:
                return False
            shard.state = ShardState.LEASED
            shard.node_id = node_id
            shard.attempts += 1
            shard.leased_at = utcnow()
            job = await session.get(JobRow, shard.job_id)
            assert job is not None
            if job.state == JobState.QUEUED:
                job.state = JobState.RUNNING
                job.started_at = utcnow()
                job.version += 1
            return True

    async def release(self, shard_ids: Sequence[str]) -> set[str]:
        """Put leased shards back in the queue; returns the ones that were released (a shard
        done or cancelled meanwhile is left alone). The dispatcher calls it once no node runs
        the shard any more."""
        if not shard_ids:
            return set()
        async with self._sessions.begin() as session:
            released = await session.scalars(
                update(ShardRow)
                .where(ShardRow.shard_id.in_(shard_ids), ShardRow.state == ShardState.LEASED)
                .values(state=ShardState.PENDING, node_id=None, leased_at=None)
                .returning(ShardRow.shard_id)
            )
            return set(released)

    async def complete_shard(self, node_id: str, output: ShardOutput) -> tuple[JobView, bool]:
        """Record a shard's accepted result, paid to `node_id` (the node that produced it; not
        necessarily the first lessee: a backup or a verifier may win). Returns the job and
        whether this finished it."""
        async with self._sessions.begin() as session:
            shard = await session.get(ShardRow, output.shard_id)
            if shard is None or shard.state != ShardState.LEASED:
                raise FailedPreconditionError(f"shard {output.shard_id} is no longer running")
            job = await session.get(JobRow, shard.job_id)
            node = await session.get(NodeRow, node_id)
            assert job is not None
            assert node is not None
            shard.state = ShardState.DONE
            shard.node_id = node_id
            shard.embeddings = output.embeddings
            shard.digest = output.digest
            shard.wall_seconds = output.wall_seconds
            shard.provider = output.provider
            shard.completed_at = utcnow()
            job.shards_done += 1
            job.tokens_processed += shard.model_tokens
            job.version += 1
            node.shards_done += 1
            node.tokens_processed += shard.model_tokens
            session.add(
                LedgerRow(
                    shard_id=shard.shard_id,
                    job_id=job.job_id,
                    address=node.address,
                    model=job.model,
                    tokens=shard.model_tokens,
                    amount_micro=self._prices.reward_micro(job.model, shard.model_tokens),
                    created_at=utcnow(),
                    epoch=None,
                    withheld=node.withheld,
                )
            )
            finished = job.shards_done == job.shards_total
            if finished:
                await session.flush()
                await self._merge(session, job)
            return _job_view(job), finished

    async def _merge(self, session: AsyncSession, job: JobRow) -> None:
        spans, rows = await _window_embeddings(session, job.job_id)
        docs = await session.scalars(select(DocumentRow).where(DocumentRow.job_id == job.job_id))
        for doc in docs:
            merged = document_embedding(spans[doc.index], np.stack(rows[doc.index]))
            doc.embedding = merged.astype("<f4").tobytes()
        job.state = JobState.SUCCEEDED
        job.finished_at = utcnow()

    async def record_verification(
        self,
        shard_id: str,
        agreed: Sequence[str],
        caught: Sequence[tuple[str, float]],
    ) -> dict[str, float]:
        """Record a verification's outcome. Nodes that agreed gain a little reputation; a node
        caught returning a wrong output has its reputation halved and its rewards for the open
        epoch withheld (rows already earned in it, and any more until the epoch closes).
        Returns each node's reputation afterwards."""
        now = utcnow()
        reputations: dict[str, float] = {}
        async with self._sessions.begin() as session:
            for node_id, ok, cosine in [
                *((n, True, 1.0) for n in agreed),
                *((n, False, c) for n, c in caught),
            ]:
                session.add(
                    VerificationRow(
                        shard_id=shard_id, node_id=node_id, agreed=ok, cosine=cosine, created_at=now
                    )
                )
                node = await session.get(NodeRow, node_id)
                if node is None:
                    continue
                node.reputation = next_reputation(node.reputation, ok)
                if ok:
                    node.verifications_passed += 1
                else:
                    node.verifications_failed += 1
                    node.withheld = True
                    await session.execute(
                        update(LedgerRow)
                        .where(LedgerRow.address == node.address, LedgerRow.epoch.is_(None))
                        .values(withheld=True)
                    )
                reputations[node_id] = node.reputation
        return reputations

    async def fail(self, job_id: str, error: str) -> JobView:
        return await self._finish(job_id, JobState.FAILED, error)

    async def cancel(self, job_id: str) -> JobView:
        return await self._finish(job_id, JobState.CANCELLED, "")

    async def _finish(self, job_id: str, state: JobState, error: str) -> JobView:
        async with self._sessions.begin() as session:
            job = await session.get(JobRow, job_id)
            if job is None:
                raise NotFoundError(f"no job with id {clip(job_id)}")
            if JobState(job.state).finished:
                if state is JobState.CANCELLED:
                    raise FailedPreconditionError(f"job {job_id} has already {job.state}")
                return _job_view(job)
            job.state = state
            job.error = error
            job.finished_at = utcnow()
            job.version += 1
            await session.execute(
                update(ShardRow)
                .where(ShardRow.job_id == job_id, ShardRow.state != ShardState.DONE)
                .values(state=ShardState.CANCELLED)
            )
            return _job_view(job)
