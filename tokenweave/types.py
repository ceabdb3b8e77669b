"""The frozen records both sides of the wire share: jobs, nodes, hardware, shares, chain, epochs.

The coordinator builds them from its database rows and sends them as protobuf; the SDK rebuilds
the same types from the protobuf (each side's conversions live in one module: the coordinator's
_convert.py and the SDK's _convert.py). Plain Python: no gRPC, SQL or numpy here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


class JobState(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True, slots=True)
class NodeShare:
    """One node's part in a job: the shards it ran and their model tokens."""

    node_id: str
    address: str
    shards: int
    tokens: int


@dataclass(frozen=True, slots=True)
class JobInfo:
    job_id: str
    state: JobState
    #: The kind of work ("embed", ...) and the options it was planned with, as text.
    workload: str
    options: Mapping[str, str]
    model: str
    documents: int
    #: Document tokens, special tokens excluded.
    tokens: int
    #: Work items over all shards (windows, for embed).
    items: int
    shards_total: int
    shards_done: int
    #: Model tokens processed so far (special tokens included).
    tokens_processed: int
    created_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str
    #: Increases with every change; a watch resumes after it.
    version: int
    nodes: tuple[NodeShare, ...] = ()
    #: Nodes running a shard of the job right now.
    nodes_busy: int = 0
    #: Root CID of the dataset the documents came from; empty when they were sent inline.
    dataset: str = ""
    #: Model tokens per second since the job started.
    tokens_per_second: float = 0.0
    #: The client that submitted it.
    owner: str = ""

    # Names of the 0.1 SDK, kept for its callers.
    @property
    def status(self) -> JobState:
        return self.state

    @property
    def sequence(self) -> int:
        return self.version

    @property
    def windows(self) -> int:
        return self.items

    @property
    def window(self) -> int:
        return _int(self.options.get("window", ""))

    @property
    def overlap(self) -> int:
        return _int(self.options.get("overlap", ""))


@dataclass(frozen=True, slots=True)
class Gpu:
    name: str
    memory_bytes: int
    #: CUDA compute capability ("9.0"); "" when unknown.
    compute_capability: str = ""


@dataclass(frozen=True, slots=True)
class Hardware:
    cpu_cores: int = 0
    memory_bytes: int = 0
    gpus: tuple[Gpu, ...] = ()
    #: ONNX Runtime execution providers, best first.
    providers: tuple[str, ...] = ()
    platform: str = ""


@dataclass(frozen=True, slots=True)
class ModelOffer:
    """A model a node runs: the sha256 of its file and the node's measured speed."""

    name: str
    sha256: str
    tokens_per_second: float


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    #: Ethereum address that receives the operator's rewards.
    address: str
    online: bool
    hardware: Hardware
    models: tuple[ModelOffer, ...]
    shards_running: int
    shards_done: int
    tokens_processed: int
    last_seen: dt.datetime | None
    version: str
    #: libp2p identity and addresses where the node serves dataset blocks.
    peer_id: str = ""
    multiaddrs: tuple[str, ...] = ()
    #: 1.0 for a new node; halved by each failed audit or wrong output.
    reputation: float = 1.0
    audits_passed: int = 0
    audits_failed: int = 0
    #: Verified shards where its output agreed with another node's, and where it did not.
    verifications_passed: int = 0
    verifications_failed: int = 0
    #: Caught returning wrong outputs in the open epoch: its rewards for it are withheld.
    withheld: bool = False

    # Names of the 0.1 SDK, kept for its callers.
    @property
    def cpu_cores(self) -> int:
        return self.hardware.cpu_cores

    @property
    def memory_bytes(self) -> int:
        return self.hardware.memory_bytes

    @property
    def gpus(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.hardware.gpus)

    @property
    def providers(self) -> tuple[str, ...]:
        return self.hardware.providers

    @property
    def speeds(self) -> dict[str, float]:
        """Model name → the node's measured tokens per second."""
        return {m.name: m.tokens_per_second for m in self.models}


@dataclass(frozen=True, slots=True)
class ChainInfo:
    chain_id: int
    #: "embedded" or the JSON-RPC URL.
    endpoint: str
    token: str
    distributor: str


class EpochState(StrEnum):
    CLOSED = "CLOSED"
    POSTED = "POSTED"
    SETTLED = "SETTLED"


@dataclass(frozen=True, slots=True)
class EpochInfo:
    epoch: int
    state: EpochState
    #: Merkle root over (address, cumulative amount in wei), 0x-hex.
    root: str
    operators: int
    tokens: int
    #: Reward tokens earned in the epoch, as a decimal string.
    amount: str
    tx_hash: str
    closed_at: dt.datetime | None
    settled_at: dt.datetime | None
    attempts: int
    last_error: str
