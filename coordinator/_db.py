"""The coordinator's tables (SQLAlchemy 2.0, typed) and engine set-up.

Jobs, their documents and shards, and nodes live here; the in-memory dispatcher only caches what
is running. Task payloads, outputs and results are opaque bytes of the job's workload. SQLite
(WAL) by default, PostgreSQL through `--db postgresql+asyncpg://...`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Annotated, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    event,
    text,
)
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.pool import ConnectionPoolEntry

from tokenweave.coordinator._migrate import migrate

T = TypeVar("T")

strpk = Annotated[str, mapped_column(String(80), primary_key=True)]
timestamp = Annotated[dt.datetime, mapped_column()]


#: Values bound in one `IN (...)` at most: SQLite and asyncpg allow 32,766 parameters a
#: statement; a batch of writes stays far below.
IN_CHUNK = 1000


def chunked(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """`values` in slices of at most `size`, for statements that bind each one."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


#: SQLSTATEs of a transaction the server aborted to let others through: deadlock_detected,
#: serialization_failure. Run again, it succeeds.
TRANSIENT_SQLSTATES = ("40P01", "40001")


def transient(exc: BaseException) -> bool:
    """Whether `exc` is a transaction the database aborted to break a deadlock or a
    serialization conflict (run again, it succeeds)."""
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None) or getattr(
        getattr(orig, "__cause__", None), "sqlstate", None
    )
    return state in TRANSIENT_SQLSTATES or "deadlock detected" in str(exc)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(AsyncAttrs, DeclarativeBase):
    pass


class NodeRow(Base):
    __tablename__ = "nodes"

    node_id: Mapped[strpk]
    address: Mapped[str] = mapped_column(String(42))
    hardware: Mapped[dict[str, object]] = mapped_column(JSON)
    models: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    version: Mapped[str] = mapped_column(String(40))
    #: libp2p peer id and multiaddrs where the node serves dataset blocks.
    peer_id: Mapped[str] = mapped_column(String(128), default="")
    multiaddrs: Mapped[list[str]] = mapped_column(JSON, default=list)
    registered_at: Mapped[timestamp]
    last_seen: Mapped[timestamp]
    shards_done: Mapped[int] = mapped_column(default=0)
    tokens_processed: Mapped[int] = mapped_column(default=0)
    #: 1.0 for a new node; halved by each failed audit, restored slowly by passed ones.
    reputation: Mapped[float] = mapped_column(default=1.0)
    audits_passed: Mapped[int] = mapped_column(default=0)
    audits_failed: Mapped[int] = mapped_column(default=0)
    #: Verified shards whose output agreed with another node's, and ones where it did not.
    verifications_passed: Mapped[int] = mapped_column(default=0)
    verifications_failed: Mapped[int] = mapped_column(default=0)
    #: Verified results that agreed since it was last caught (its record, for vetting).
    agreed_since_caught: Mapped[int] = mapped_column(default=0)
    #: Shards it reported failed, and shards it gave back unfinished (it left or handed back).
    shards_failed: Mapped[int] = mapped_column(default=0)
    shards_abandoned: Mapped[int] = mapped_column(default=0)


class JobRow(Base):
    __tablename__ = "jobs"

    job_id: Mapped[strpk]
    state: Mapped[str] = mapped_column(String(16), index=True)
    #: The kind of work ("embed", ...) and the options it was planned with.
    workload: Mapped[str] = mapped_column(String(40))
    options: Mapped[dict[str, str]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(80))
    model_sha256: Mapped[str] = mapped_column(String(64))
    documents: Mapped[int]
    tokens: Mapped[int]
    #: Work items over all shards (windows, for embed).
    items: Mapped[int]
    shards_total: Mapped[int]
    shards_done: Mapped[int] = mapped_column(default=0)
    tokens_processed: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[timestamp]
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    error: Mapped[str] = mapped_column(default="")
    #: Bumped on every change; WatchJob resumes from it.
    version: Mapped[int] = mapped_column(default=0)
    #: Root CID of the dataset the documents came from; empty when they were sent inline.
    dataset: Mapped[str] = mapped_column(String(80), default="")
    #: The client that submitted it (its API key's client): only it and admins may see it.
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)


class DocumentRow(Base):
    __tablename__ = "documents"

    job_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    tokens: Mapped[int]
    #: The workload's own record of the document (e.g. token offsets in the text).
    detail: Mapped[bytes] = mapped_column(LargeBinary)
    #: The merged result (a TensorMap message), set when the job succeeds.
    result: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: Dataset jobs: {"file", "start", "end", "text_field"}, where nodes read the text.
    source: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)


class ShardRow(Base):
    """One task of a job; its payload and output are opaque bytes of the job's workload."""

    __tablename__ = "shards"
    __table_args__ = (Index("ix_shards_job_index", "job_id", "index", unique=True),)

    shard_id: Mapped[strpk]
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.job_id", ondelete="CASCADE"))
    index: Mapped[int]
    #: The job's stage the shard belongs to: 0 for the planned tasks, n for the tasks the
    #: workload planned once every task before them was accepted (map → reduce levels).
    stage: Mapped[int] = mapped_column(default=0)
    #: Sent to the node as is; in a table of its own, so that the row's many updates do not
    #: rewrite it (SQLite rewrites a whole row, blobs included, on any update).
    payload_row: Mapped[ShardPayloadRow] = relationship(
        cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )
    #: The workload's own record of the task, never sent (what results are checked against).
    detail: Mapped[bytes] = mapped_column(LargeBinary)
    #: Model tokens the shard takes (placement, deadlines).
    cost: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), index=True)
    node_id: Mapped[str | None] = mapped_column(String(80))
    attempts: Mapped[int] = mapped_column(default=0)
    leased_at: Mapped[dt.datetime | None]
    #: The accepted output, set when done.
    output: Mapped[bytes | None] = mapped_column(LargeBinary)
    digest: Mapped[str] = mapped_column(String(64), default="")
    wall_seconds: Mapped[float] = mapped_column(default=0.0)
    provider: Mapped[str] = mapped_column(String(40), default="")
    completed_at: Mapped[dt.datetime | None]
    #: Dataset jobs: bytes of dataset the shard reads, and the nodes that held all of its
    #: blocks at submission (placement prefers them).
    read_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    local_nodes: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The coordinator instance whose queue holds the shard (None: unclaimed). Several
    #: coordinators share one database; each runs only the shards it claimed (`_claims.py`).
    owner: Mapped[str | None] = mapped_column(String(32), index=True, default=None)


class ShardPayloadRow(Base):
    __tablename__ = "shard_payloads"

    shard_id: Mapped[str] = mapped_column(
        ForeignKey("shards.shard_id", ondelete="CASCADE"), primary_key=True
    )
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    #: Kept as a file instead (`PayloadFiles`, for large payloads).
    external: Mapped[bool] = mapped_column(default=False)


class LedgerRow(Base):
    """One verified shard's reward: appended once, never updated except to stamp its epoch."""

    __tablename__ = "ledger"
    #: A shard is paid once: a second row for it exists only when its first operator was caught
    #: cheating and it ran again, and then at most one of them is not withheld. The database
    #: refuses anything else.
    __table_args__ = (
        Index("ix_ledger_shard_address", "shard_id", "address", unique=True),
        Index(
            "ix_ledger_paid_once",
            "shard_id",
            unique=True,
            sqlite_where=text("NOT withheld"),
            postgresql_where=text("NOT withheld"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    shard_id: Mapped[str] = mapped_column(String(80), index=True)
    job_id: Mapped[str] = mapped_column(String(80), index=True)
    address: Mapped[str] = mapped_column(String(42), index=True)
    model: Mapped[str] = mapped_column(String(80))
    #: Tokens billed: input + output (their split kept for per-direction prices).
    tokens: Mapped[int]
    input_tokens: Mapped[int] = mapped_column(default=0)
    output_tokens: Mapped[int] = mapped_column(default=0)
    #: Reward in micro-tokens (1e-6 of the reward token).
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[timestamp]
    epoch: Mapped[int | None] = mapped_column(index=True)
    #: The operator was caught returning wrong outputs in this row's epoch: not paid.
    withheld: Mapped[bool] = mapped_column(default=False)


class WithheldRow(Base):
    """An operator caught returning wrong outputs in the open epoch: its rewards for the epoch
    are withheld. Written and cleared (when the epoch closes) by the ledger only."""

    __tablename__ = "withheld"

    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    since: Mapped[timestamp]


class EpochRow(Base):
    __tablename__ = "epochs"

    epoch: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    #: CLOSED → POSTED (transaction mined) → SETTLED (enough confirmations).
    state: Mapped[str] = mapped_column(String(16), index=True)
    closed_at: Mapped[timestamp]
    #: Merkle root over (address, cumulative amount in wei), 0x-hex.
    root: Mapped[str] = mapped_column(String(66))
    operators: Mapped[int]
    tokens: Mapped[int] = mapped_column(BigInteger)
    amount_micro: Mapped[int] = mapped_column(BigInteger)
    tx_hash: Mapped[str] = mapped_column(String(66), default="")
    block_number: Mapped[int | None] = mapped_column(BigInteger)
    posted_at: Mapped[dt.datetime | None]
    settled_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str] = mapped_column(default="")


class EpochBalanceRow(Base):
    """An operator's leaf in an epoch's tree: what it has earned in all epochs up to this one."""

    __tablename__ = "epoch_balances"

    epoch: Mapped[int] = mapped_column(ForeignKey("epochs.epoch"), primary_key=True)
    address: Mapped[str] = mapped_column(String(42), primary_key=True)
    tokens: Mapped[int] = mapped_column(BigInteger)
    earned_micro: Mapped[int] = mapped_column(BigInteger)
    cumulative_micro: Mapped[int] = mapped_column(BigInteger)


class DatasetRow(Base):
    __tablename__ = "datasets"

    root: Mapped[str] = mapped_column(String(80), primary_key=True)
    name: Mapped[str]
    size: Mapped[int] = mapped_column(BigInteger)
    blocks: Mapped[int]
    created_at: Mapped[timestamp]
    #: The client that first uploaded it: its bytes count against that client's quota.
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)


class DatasetBlockRow(Base):
    __tablename__ = "dataset_blocks"

    root: Mapped[str] = mapped_column(ForeignKey("datasets.root"), primary_key=True)
    cid: Mapped[str] = mapped_column(String(80), primary_key=True)


class BlockProviderRow(Base):
    """Node `node_id` acknowledged holding block `cid`."""

    __tablename__ = "block_providers"

    cid: Mapped[str] = mapped_column(String(80), primary_key=True)
    node_id: Mapped[str] = mapped_column(String(80), primary_key=True)


class BlockChallengeRow(Base):
    """An audit question for block `cid`, minted when the coordinator saw its bytes at upload:
    a fresh nonce and the answer sha256(nonce || block). Each is asked once, then deleted."""

    __tablename__ = "block_challenges"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cid: Mapped[str] = mapped_column(String(80), index=True)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    proof: Mapped[bytes] = mapped_column(LargeBinary)


class AuditRow(Base):
    """One audit of one provider, and what was decided."""

    __tablename__ = "audits"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cid: Mapped[str] = mapped_column(String(80))
    node_id: Mapped[str] = mapped_column(String(80), index=True)
    passed: Mapped[bool]
    #: Why it failed (wrong proof, the node's own error, no answer in time); empty if passed.
    reason: Mapped[str] = mapped_column(default="")
    created_at: Mapped[timestamp]


class VerificationRow(Base):
    """One node's part in the verification of one shard, and what was decided."""

    __tablename__ = "verifications"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    shard_id: Mapped[str] = mapped_column(String(80), index=True)
    node_id: Mapped[str] = mapped_column(String(80), index=True)
    agreed: Mapped[bool]
    #: Lowest per-window cosine to the accepted output (1.0 for the accepted one itself).
    cosine: Mapped[float]
    created_at: Mapped[timestamp]


class CoordinatorRow(Base):
    """A coordinator instance sharing this database: alive while its heartbeat is fresh."""

    __tablename__ = "coordinators"

    coordinator_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: Where nodes and clients reach it (host:port), for operators and nodes' failover lists.
    address: Mapped[str] = mapped_column(String(300), default="")
    started_at: Mapped[timestamp]
    heartbeat_at: Mapped[timestamp]


class ApiKeyRow(Base):
    """A developer's API key: only a hash of its secret is kept. Jobs and datasets belong to
    the key's client; an admin key may read and manage everyone's."""

    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(24), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    #: sha256 of the key's secret part.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    admin: Mapped[bool] = mapped_column(default=False)
    label: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[timestamp]
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class OnnxModelRow(Base):
    """An ONNX model a developer registered: its file is a dataset of the network."""

    __tablename__ = "onnx_models"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    cid: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger)
    #: `OnnxManifest.to_json()`.
    manifest: Mapped[str]
    #: The relative error two honest runs' outputs may differ by.
    max_error: Mapped[float]
    owner: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[timestamp]


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


async def open_database(url: str) -> tuple[AsyncEngine, async_sessionmaker[AsyncSession]]:
    """Create the engine (SQLite pragmas applied) and bring the database to this code's schema
    (`_migrate.migrate`: a new one gets every migration, an older one is upgraded)."""
    # A server's connections can die under the pool (a restart): each is checked before use
    # and replaced, so the coordinator recovers when the database returns.
    sqlite = url.startswith("sqlite")
    engine = create_async_engine(url, pool_pre_ping=not sqlite)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(migrate)
    except Exception:
        await engine.dispose()
        raise
    return engine, async_sessionmaker(engine, expire_on_commit=False)
