"""Frozen values that cross the coordinator's boundary (servicers convert them to protobuf)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class ShardState(StrEnum):
    PENDING = "PENDING"
    LEASED = "LEASED"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class DocumentSource:
    """Where a dataset job's document lives: bytes [start, end) of UnixFS file `file`; a JSON
    Lines record whose `text_field` is the text, or (empty field) the text itself."""

    file: str
    start: int
    end: int
    text_field: str = ""
    #: Every block a reader fetches for it (for placement near the data).
    blocks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DocumentInput:
    name: str
    text: str
    source: DocumentSource | None = None


@dataclass(frozen=True, slots=True)
class JobRequest:
    model: str
    documents: tuple[DocumentInput, ...]
    window: int | None = None
    overlap: int | None = None
    #: Root CID of the dataset the documents came from, when they did.
    dataset: str = ""
    #: Dataset block → the nodes holding it, when the job was submitted.
    holders: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeShare:
    node_id: str
    address: str
    shards: int
    tokens: int


@dataclass(frozen=True, slots=True)
class JobView:
    job_id: str
    state: JobState
    model: str
    window: int
    overlap: int
    documents: int
    tokens: int
    windows: int
    shards_total: int
    shards_done: int
    tokens_processed: int
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str
    version: int
    nodes: tuple[NodeShare, ...] = ()
    nodes_busy: int = 0
    dataset: str = ""

    @property
    def tokens_per_second(self) -> float:
        if self.started_at is None or self.tokens_processed == 0:
            return 0.0
        end = self.finished_at or dt.datetime.now(dt.UTC).replace(tzinfo=None)
        elapsed = (end - self.started_at).total_seconds()
        return self.tokens_processed / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True, slots=True)
class WindowResult:
    start: int
    end: int
    char_start: int
    char_end: int
    embedding: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class DocumentResult:
    index: int
    name: str
    tokens: int
    windows: tuple[WindowResult, ...]
    embedding: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class ModelOffer:
    """A model a node can run, with the hash of its file and the node's measured speed."""

    name: str
    sha256: str
    tokens_per_second: float


@dataclass(frozen=True, slots=True)
class NodeRegistration:
    address: str
    nonce: bytes
    signature: bytes
    hardware: dict[str, object]
    models: tuple[ModelOffer, ...]
    max_inflight_shards: int
    version: str
    peer_id: str = ""
    multiaddrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeView:
    node_id: str
    address: str
    online: bool
    hardware: dict[str, object]
    models: tuple[ModelOffer, ...]
    shards_running: int
    shards_done: int
    tokens_processed: int
    last_seen: dt.datetime
    version: str
    peer_id: str = ""
    multiaddrs: tuple[str, ...] = ()
    reputation: float = 1.0
    audits_passed: int = 0
    audits_failed: int = 0
    verifications_passed: int = 0
    verifications_failed: int = 0
    #: Caught returning wrong outputs in the open epoch: its rewards for it are withheld.
    withheld: bool = False


@dataclass(frozen=True, slots=True)
class Assignment:
    """A shard on its way to a node: each window's token ids, special tokens excluded."""

    shard_id: str
    job_id: str
    model: str
    model_sha256: str
    #: Token windows sent inline (empty for a dataset job, which sends `sources` and `spans`).
    windows: tuple[npt.NDArray[np.uint32], ...]
    #: Dataset jobs: (document index, where to read it) for each document the shard needs.
    sources: tuple[tuple[int, DocumentSource], ...] = ()
    #: Dataset jobs: (document, start, end) token ranges to run.
    spans: tuple[tuple[int, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class StoreBlock:
    """A dataset block for a node to keep."""

    cid: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FetchBlock:
    """A repair: copy block `cid` from one of `providers` (multiaddrs ending in /p2p/<peer>)."""

    cid: str
    providers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuditChallenge:
    cid: str
    nonce: bytes


@dataclass(frozen=True, slots=True)
class ShardCancel:
    shard_id: str


@dataclass(frozen=True, slots=True)
class ShardAck:
    shard_id: str
    accepted: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ShardOutput:
    shard_id: str
    embeddings: bytes
    rows: int
    dim: int
    tokens: int
    wall_seconds: float
    digest: str
    provider: str
    #: sha256 of the token ids the node ran (`windows_digest`).
    tokens_digest: str = ""
