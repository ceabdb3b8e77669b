"""Node lanes: each connected node's lease stream as the coordinator sees it, and the requests
sent down lanes whose answers come back up (block copies, audits), matched by key.

A lane is what the servicer's Lease call drains (`outbox`) and what the dispatcher fills: shards,
cancellations, acknowledgements, block and audit requests. `Replies` correlates a request with its
answer for every part of the coordinator that asks nodes something (the data service, custody),
so none of them keeps futures of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from tokenweave.coordinator._views import (
    Assignment,
    AuditAnswer,
    AuditChallenge,
    FetchBlock,
    QueuedShard,
    ShardAck,
    ShardCancel,
    StoreBlock,
)
from tokenweave.types import ModelOffer

logger = logging.getLogger(__name__)

LaneMessage = Assignment | ShardCancel | ShardAck | StoreBlock | FetchBlock | AuditChallenge | None

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class DetachReason(StrEnum):
    """Why a lane closed."""

    STREAM_CLOSED = "lease stream closed"
    REPLACED = "replaced by a new lease stream"
    NO_HEARTBEAT = "no heartbeat"
    CUT_OFF = "reputation below the threshold"


@dataclass(eq=False)
class NodeLane:
    """One node's open lease stream: what it holds and what is on its way to it."""

    node_id: str
    token: str
    max_inflight: int
    models: dict[str, ModelOffer]
    workloads: frozenset[str]
    outbox: asyncio.Queue[LaneMessage] = field(default_factory=asyncio.Queue)
    inflight: dict[str, QueuedShard] = field(default_factory=dict)
    #: Shards taken back from this node (job cancelled or failed); a late result is dropped.
    revoked: set[str] = field(default_factory=set)
    #: The node handed shards back: it is shutting down and gets no more.
    draining: bool = False
    #: A run of this node is past its deadline (stalled?): it gets no new work until it
    #: returns a result.
    late: bool = False

    def load(self) -> int:
        """Model tokens of the shards it holds."""
        return sum(s.cost for s in self.inflight.values())

    def free_slots(self) -> int:
        return self.max_inflight - len(self.inflight)

    def offer(self, shard: QueuedShard) -> ModelOffer | None:
        """The node's offer for the shard's model, when it runs that model file and workload."""
        offer = self.models.get(shard.model)
        if offer is None or offer.sha256 != shard.model_sha256:
            return None
        return offer if shard.workload in self.workloads else None

    def send(self, message: LaneMessage) -> None:
        self.outbox.put_nowait(message)

    def revoke(self, shard_id: str) -> None:
        """Take a shard back: the node is told to drop it, and a late result is refused."""
        del self.inflight[shard_id]
        self.revoked.add(shard_id)
        self.send(ShardCancel(shard_id))

    def close(self) -> None:
        """End the lease stream once what is queued has been sent."""
        self.send(None)


class Replies(Generic[K, V]):
    """Requests sent down lanes, waiting for their answers, keyed by (node, key)."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._waiting: dict[tuple[str, K], asyncio.Future[V]] = {}
        #: Callers waiting on each request; the last to give up withdraws it.
        self._waiters: dict[tuple[str, K], int] = {}

    async def ask(
        self,
        lane: NodeLane,
        key: K,
        message: LaneMessage,
        patience: float,
        timed_out: V,
    ) -> V:
        """Send `message` to the node and wait for the answer to `key`, or `timed_out` past
        `patience` seconds. Concurrent asks of one key of one node share one request."""
        slot = (lane.node_id, key)
        future = self._waiting.get(slot)
        if future is None:
            future = self._waiting[slot] = asyncio.get_running_loop().create_future()
            future.add_done_callback(lambda f: self._forget(slot, f))
            lane.send(message)
        self._waiters[slot] = self._waiters.get(slot, 0) + 1
        try:
            return await asyncio.wait_for(asyncio.shield(future), patience)
        except TimeoutError:
            return timed_out
        finally:
            self._waiters[slot] -= 1
            if not self._waiters[slot]:
                del self._waiters[slot]
                if not future.done():  # nobody waits any more: a late answer is ignored
                    future.cancel()
                    self._forget(slot, future)

    def answer(self, node_id: str, key: K, value: V) -> None:
        """The node answered; an answer nobody waits for (late, or never asked) is ignored."""
        future = self._waiting.get((node_id, key))
        if future is not None and not future.done():
            future.set_result(value)
        elif future is None:
            logger.debug("unexpected %s answer from %s for %r", self._what, node_id, key)

    def node_left(self, node_id: str, answer: Callable[[K], V]) -> None:
        """Resolve everything still asked of `node_id` with `answer(key)`."""
        for (node, key), future in list(self._waiting.items()):
            if node == node_id and not future.done():
                future.set_result(answer(key))

    def _forget(self, slot: tuple[str, K], future: asyncio.Future[V]) -> None:
        if self._waiting.get(slot) is future:
            del self._waiting[slot]


class Lanes:
    """The connected nodes' lanes, and the requests waiting on them (block copies, audits)."""

    def __init__(self) -> None:
        self._lanes: dict[str, NodeLane] = {}
        #: (node, cid) → "" once the node confirms it keeps the block, else why not.
        self._blocks: Replies[str, str] = Replies("block")
        #: (node, (cid, nonce)) → the node's proof of possession.
        self._audits: Replies[tuple[str, bytes], AuditAnswer] = Replies("audit")

    def __len__(self) -> int:
        return len(self._lanes)

    def __iter__(self) -> Iterator[NodeLane]:
        return iter(list(self._lanes.values()))

    def get(self, node_id: str) -> NodeLane | None:
        return self._lanes.get(node_id)

    def connected(self) -> list[str]:
        return sorted(self._lanes)

    def busy_with(self, job_id: str) -> int:
        """How many nodes hold a shard of the job now."""
        return sum(any(s.job_id == job_id for s in lane.inflight.values()) for lane in self)

    def running(self) -> dict[str, int]:
        """Shards each connected node holds."""
        return {lane.node_id: len(lane.inflight) for lane in self}

    def add(self, lane: NodeLane) -> NodeLane | None:
        """Open `lane`; returns the lane it replaces, if the node had one."""
        old = self._lanes.get(lane.node_id)
        self._lanes[lane.node_id] = lane
        return old

    def remove(self, lane: NodeLane) -> bool:
        """Close `lane` if it is the node's current one; whatever was asked of the node is
        answered as not done. False for a lane already replaced."""
        if self._lanes.get(lane.node_id) is not lane:
            return False
        del self._lanes[lane.node_id]
        node = lane.node_id
        self._blocks.node_left(node, lambda cid: f"node {node} left before storing block {cid}")
        self._audits.node_left(node, lambda _: AuditAnswer(b"", "node left", left=True))
        return True

    async def keep_block(
        self, node_id: str, message: StoreBlock | FetchBlock, patience: float
    ) -> str:
        """Ask a node to keep a block (sent, or fetched from peers); "" once it confirms, else
        why it did not. Concurrent requests for one block on one node share one."""
        lane = self._lanes.get(node_id)
        if lane is None:
            return f"node {node_id} is not connected"
        return await self._blocks.ask(
            lane,
            message.cid,
            message,
            patience,
            timed_out=f"node {node_id} did not confirm block {message.cid} within {patience:.0f} s",
        )

    def block_kept(self, node_id: str, cid: str, ok: bool, error: str) -> None:
        self._blocks.answer(node_id, cid, "" if ok else error or "refused")

    async def audit(self, node_id: str, challenge: AuditChallenge, patience: float) -> AuditAnswer:
        """Ask a node for sha256(nonce || block) of a block it is said to hold."""
        lane = self._lanes.get(node_id)
        if lane is None:
            return AuditAnswer(b"", f"node {node_id} is not connected", left=True)
        return await self._audits.ask(
            lane,
            (challenge.cid, challenge.nonce),
            challenge,
            patience,
            timed_out=AuditAnswer(b"", f"no answer within {patience:.0f} s"),
        )

    def audit_answered(self, node_id: str, cid: str, nonce: bytes, answer: AuditAnswer) -> None:
        self._audits.answer(node_id, (cid, nonce), answer)
