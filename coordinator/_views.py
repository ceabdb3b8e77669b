"""Frozen values that cross the coordinator's boundary (servicers convert them to protobuf)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from tokenweave.types import Hardware, ModelOffer
from tokenweave.workloads import DocumentInput


class ShardState(StrEnum):
    PENDING = "PENDING"
    LEASED = "LEASED"
    DONE = "DONE"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True, slots=True)
class JobRequest:
    workload: str
    model: str
    documents: tuple[DocumentInput, ...]
    #: Workload options as text (e.g. {"window": "256"}); the workload parses and checks them.
    options: Mapping[str, str] = field(default_factory=dict)
    #: Root CID of the dataset the documents came from, when they did.
    dataset: str = ""
    #: Dataset block → the nodes holding it, when the job was submitted.
    holders: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: The client submitting it (its API key's); quotas and visibility are per owner.
    owner: str = ""


@dataclass(frozen=True, slots=True)
class QueuedShard:
    """A shard waiting for a node, with what the engine needs to place, check and pay it (its
    payload stays in the database until it is sent)."""

    shard_id: str
    job_id: str
    workload: str
    model: str
    model_sha256: str
    #: Model tokens it takes.
    cost: int
    #: The workload's own record of it (checks and comparisons read it).
    detail: bytes
    #: Dataset jobs: bytes of the documents the node reads, and the nodes holding them all.
    read_bytes: int = 0
    local_nodes: frozenset[str] = frozenset()
    #: Its place among the job's tasks (for a generation, the prompt's).
    index: int = 0


@dataclass(frozen=True, slots=True)
class DocumentResult:
    index: int
    name: str
    tokens: int
    #: The merged result, as the job's workload defines it.
    outputs: Mapping[str, npt.NDArray[np.generic]]


@dataclass(frozen=True, slots=True)
class NodeRegistration:
    address: str
    nonce: bytes
    signature: bytes
    hardware: Hardware
    models: tuple[ModelOffer, ...]
    max_inflight_shards: int
    version: str
    peer_id: str = ""
    multiaddrs: tuple[str, ...] = ()
    workloads: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Assignment:
    """A shard on its way to a node: its workload's payload, opaque to the engine."""

    shard_id: str
    job_id: str
    workload: str
    model: str
    model_sha256: str
    payload: bytes


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
class AuditAnswer:
    """A node's answer to an audit: the proof, or why it has none."""

    proof: bytes
    error: str = ""
    #: The node left before answering (not a failure: nothing was learned).
    left: bool = False


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
    """A node's result for a shard: its workload's output bytes and how the run went."""

    shard_id: str
    output: bytes
    #: Model tokens the node says the run took.
    tokens: int
    wall_seconds: float
    #: sha256 of `output` (hex), as the node computed it.
    digest: str
    provider: str
