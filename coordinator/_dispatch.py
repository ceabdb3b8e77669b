"""Dispatcher: the queue of pending shards and the lanes through which nodes receive them.

The database (JobStore) is the truth; the dispatcher keeps what is in flight. Every event that can
change a placement (a job arrives, a node attaches or frees a slot) runs `_pump`, which leases the
queued shards, oldest job first, to the nodes expected to finish them first (`choose_node`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._jobs import JobStore, QueuedShard
from tokenweave.coordinator._nodes import NodeRegistry
from tokenweave.coordinator._placement import NodeLoad, choose_node, peer_fetch_seconds
from tokenweave.coordinator._verify import DEFAULT_TOLERANCE, chosen_for_verification, judge
from tokenweave.coordinator._views import (
    Assignment,
    AuditChallenge,
    DocumentResult,
    DocumentSource,
    FetchBlock,
    JobRequest,
    JobView,
    ModelOffer,
    ShardAck,
    ShardCancel,
    ShardOutput,
    StoreBlock,
)
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, clip
from tokenweave.models import windows_digest

logger = logging.getLogger(__name__)

LaneMessage = Assignment | ShardCancel | ShardAck | StoreBlock | FetchBlock | AuditChallenge | None
#: Results a shard may collect before the coordinator gives up on agreement.
MAX_OPINIONS = 3
_K = TypeVar("_K")
_V = TypeVar("_V")


@dataclass(frozen=True, slots=True)
class AuditAnswer:
    """A node's answer to an audit: the proof, or why it has none."""

    proof: bytes
    error: str = ""
    #: The node left before answering (not a failure: nothing was learned).
    left: bool = False


@dataclass(eq=False)
class NodeLane:
    """One node's open lease stream: what it holds and what is on its way to it."""

    node_id: str
    token: str
    max_inflight: int
    models: dict[str, ModelOffer]
    outbox: asyncio.Queue[LaneMessage] = field(default_factory=asyncio.Queue)
    inflight: dict[str, QueuedShard] = field(default_factory=dict)
    #: Shards taken back from this node (job cancelled or failed); a late result is dropped.
    revoked: set[str] = field(default_factory=set)
    #: The node handed shards back: it is shutting down and gets no more.
    draining: bool = False
    #: 1.0 for a trusted node; scales its share of work (see WorkPolicy.min_reputation).
    reputation: float = 1.0
    #: A run of this node is past its deadline (stalled?): it gets no new work until it
    #: returns a result.
    late: bool = False

    def load(self) -> int:
        return sum(s.model_tokens for s in self.inflight.values())


@dataclass(frozen=True, slots=True)
class WorkPolicy:
    #: Fraction of shards that also run on a second node, to be compared.
    verify_fraction: float = 0.1
    #: Lowest per-window cosine at which two outputs of a shard agree.
    tolerance: float = DEFAULT_TOLERANCE
    #: A run past factor × its expected time (from the node's measured speed) + slack gets a
    #: backup copy on another node.
    straggler_factor: float = 3.0
    straggler_slack_s: float = 2.0
    #: Nodes whose reputation falls below this are refused.
    min_reputation: float = 0.2


@dataclass(eq=False)
class _Flight:
    """A leased shard: the nodes running it and the results that await agreement."""

    shard: QueuedShard
    #: Results that must agree: 1, or 2 for a verified shard (3 after a disagreement).
    wanted: int
    #: node → monotonic deadline of its run.
    runs: dict[str, float] = field(default_factory=dict)
    #: Every node that has run (or runs) it: a further copy goes elsewhere.
    tried: set[str] = field(default_factory=set)
    results: dict[str, ShardOutput] = field(default_factory=dict)
    #: Copies still to place (verification, a tie-break, a backup, a lost run).
    extra: int = 0
    backed_up: bool = False


async def _uncancellable(change: Coroutine[Any, Any, None]) -> None:
    """Run a state change to its end even when the caller is cancelled."""
    await asyncio.shield(asyncio.ensure_future(change))


class _Broadcast:
    """Wakes every waiter on each notify."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.watchers = 0

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        """Until the next notify, or `seconds` at most."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        registry: NodeRegistry,
        catalog: ModelCatalog,
        max_attempts: int,
        policy: WorkPolicy | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._catalog = catalog
        self._max_attempts = max_attempts
        self.policy = policy or WorkPolicy()
        self._pending: dict[str, QueuedShard] = {}
        self._flights: dict[str, _Flight] = {}
        #: Nodes that failed a shard: its next lease goes elsewhere when it can.
        self._avoid: dict[str, set[str]] = {}
        self._attempts: dict[str, int] = {}
        self._lanes: dict[str, NodeLane] = {}
        self._tokens: dict[str, list[npt.NDArray[np.uint32]]] = {}
        self._sources: dict[str, list[DocumentSource | None]] = {}
        self._watchers: dict[str, _Broadcast] = {}
        self._lock = asyncio.Lock()
        #: Block copies awaiting the node's answer: (node, cid) → error ("" when stored).
        self._stores: dict[tuple[str, str], asyncio.Future[str]] = {}
        #: Audits awaiting the node's proof: (node, cid, nonce) → answer.
        self._audits: dict[tuple[str, str, bytes], asyncio.Future[AuditAnswer]] = {}

    async def recover(self) -> int:
        """Queue the shards of unfinished jobs found in the database."""
        for shard in await self._store.pending_shards():
            self._pending[shard.shard_id] = shard
        return len(self._pending)

    # -- jobs ---------------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> JobView:
        job, shards = await self._store.submit(request)
        for shard in shards:
            self._pending[shard.shard_id] = shard
        logger.info(
            "job %s: %d documents, %d tokens, %d windows in %d shards",
            job.job_id,
            job.documents,
            job.tokens,
            job.windows,
            job.shards_total,
        )
        await self._pump()
        return await self.job(job.job_id)

    async def job(self, job_id: str) -> JobView:
        view = await self._store.get(job_id)
        busy = {
            lane.node_id
            for lane in self._lanes.values()
            if any(s.job_id == job_id for s in lane.inflight.values())
        }
        return dataclasses.replace(view, nodes_busy=len(busy))

    async def watch(self, job_id: str, after_version: int) -> AsyncIterator[JobView]:
        """Yield the job each time it changes past `after_version`, until it is finished."""
        view = await self.job(job_id)
        broadcast = self._watchers.setdefault(job_id, _Broadcast())
        broadcast.watchers += 1
        try:
            while True:
                if view.version > after_version:
                    after_version = view.version
                    yield view
                if view.state.finished:
                    return
                await broadcast.wait(seconds=1.0)
                view = await self.job(job_id)
        finally:
            broadcast.watchers -= 1
            if broadcast.watchers == 0 and self._watchers.get(job_id) is broadcast:
                del self._watchers[job_id]

    def results(self, job_id: str) -> AsyncIterator[DocumentResult]:
        return self._store.results(job_id)

    async def list_jobs(self, limit: int) -> list[JobView]:
        return await self._store.recent(limit)

    def _notify(self, job_id: str) -> None:
        watcher = self._watchers.get(job_id)
        if watcher is not None:
            watcher.notify()

    async def cancel(self, job_id: str) -> JobView:
        async with self._lock:
            await self._store.cancel(job_id)
            self._drop_job(job_id)
        self._notify(job_id)
        await self._pump()
        return await self.job(job_id)

    def _drop_job(self, job_id: str) -> None:
        for shard_id in [s for s, q in self._pending.items() if q.job_id == job_id]:
            del self._pending[shard_id]
        for shard_id in [s for s, f in self._flights.items() if f.shard.job_id == job_id]:
            self._cancel_runs(self._flights.pop(shard_id))
        for lane in self._lanes.values():  # runs a replaced lane still lists
            for shard_id in [s for s, q in lane.inflight.items() if q.job_id == job_id]:
                self._revoke(lane, shard_id)
        self._tokens.pop(job_id, None)
        self._sources.pop(job_id, None)
        self._attempts = {s: n for s, n in self._attempts.items() if not s.startswith(job_id)}
        self._avoid = {s: n for s, n in self._avoid.items() if not s.startswith(job_id)}

    @staticmethod
    def _revoke(lane: NodeLane, shard_id: str) -> None:
        del lane.inflight[shard_id]
        lane.revoked.add(shard_id)
        lane.outbox.put_nowait(ShardCancel(shard_id))

    def _cancel_runs(self, flight: _Flight) -> None:
        """Take the shard back from every node still running it (a late result is dropped)."""
        for node_id in flight.runs:
            lane = self._lanes.get(node_id)
            if lane is not None and flight.shard.shard_id in lane.inflight:
                self._revoke(lane, flight.shard.shard_id)
        flight.runs.clear()

    def running_by_node(self) -> dict[str, int]:
        return {lane.node_id: len(lane.inflight) for lane in self._lanes.values()}

    # -- nodes --------------------------------------------------------------------------------

    async def attach(self, node_id: str, token: str) -> NodeLane:
        async with self._lock:
            self._registry.authenticate(node_id, token)
            old = self._lanes.get(node_id)
            if old is not None:
                await self._detach_locked(old, reason="replaced by a new lease stream")
            max_inflight, offers = self._registry.session_info(node_id)
            lane = NodeLane(node_id, token, max_inflight, {m.name: m for m in offers})
            lane.reputation = self._registry.reputation(node_id)
            self._lanes[node_id] = lane
        logger.info("node %s attached (%d slots)", node_id, max_inflight)
        await self._pump()
        return lane

    # -- dataset blocks -----------------------------------------------------------------------

    def connected_nodes(self) -> list[str]:
        return sorted(self._lanes)

    async def block_request(
        self, node_id: str, message: StoreBlock | FetchBlock, patience: float
    ) -> str:
        """Ask a node to keep a block (sent, or fetched from peers); "" once it confirms, else
        why it did not. Concurrent requests for the same block on the same node share one."""
        key = (node_id, message.cid)
        future = self._stores.get(key)
        if future is None:
            lane = self._lanes.get(node_id)
            if lane is None:
                return f"node {node_id} is not connected"
            future = self._stores[key] = asyncio.get_running_loop().create_future()
            future.add_done_callback(lambda f: self._forget(self._stores, key, f))
            lane.outbox.put_nowait(message)
        try:
            return await asyncio.wait_for(asyncio.shield(future), patience)
        except TimeoutError:
            return f"node {node_id} did not confirm block {message.cid} within {patience:.0f} s"

    def block_stored(self, lane: NodeLane, cid: str, ok: bool, error: str) -> None:
        future = self._stores.get((lane.node_id, cid))
        if future is not None and not future.done():
            future.set_result("" if ok else error or "refused")

    async def audit(self, node_id: str, challenge: AuditChallenge, patience: float) -> AuditAnswer:
        """Ask a node for sha256(nonce || block) of a block it is said to hold."""
        lane = self._lanes.get(node_id)
        if lane is None:
            return AuditAnswer(b"", f"node {node_id} is not connected", left=True)
        key = (node_id, challenge.cid, challenge.nonce)
        future = self._audits[key] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: self._forget(self._audits, key, f))
        lane.outbox.put_nowait(challenge)
        try:
            return await asyncio.wait_for(future, patience)
        except TimeoutError:
            return AuditAnswer(b"", f"no answer within {patience:.0f} s")

    def audit_answered(self, lane: NodeLane, cid: str, nonce: bytes, answer: AuditAnswer) -> None:
        future = self._audits.get((lane.node_id, cid, nonce))
        if future is not None and not future.done():
            future.set_result(answer)

    @staticmethod
    def _forget(table: dict[_K, asyncio.Future[_V]], key: _K, future: asyncio.Future[_V]) -> None:
        if table.get(key) is future:
            del table[key]

    async def detach(self, lane: NodeLane, reason: str) -> None:
        """Close a lane; whatever it held goes back to the queue."""
        await _uncancellable(self._detach(lane, reason))

    async def _detach(self, lane: NodeLane, reason: str) -> None:
        async with self._lock:
            await self._detach_locked(lane, reason)
        await self._pump()

    async def _detach_locked(self, lane: NodeLane, reason: str) -> None:
        if self._lanes.get(lane.node_id) is lane:
            del self._lanes[lane.node_id]
            for (node_id, cid), future in list(self._stores.items()):
                if node_id == lane.node_id and not future.done():
                    future.set_result(f"node {node_id} left before storing block {cid}")
            for (node_id, _, _), answer in list(self._audits.items()):
                if node_id == lane.node_id and not answer.done():
                    answer.set_result(AuditAnswer(b"", "node left", left=True))
        # Even a lane already replaced gives back what it still holds.
        held = list(lane.inflight)
        requeued = 0
        for shard_id in held:
            requeued += await self._end_run(lane, shard_id)
        lane.outbox.put_nowait(None)
        if held or reason != "lease stream closed":
            logger.info("node %s detached (%s); %d shards requeued", lane.node_id, reason, requeued)

    async def _end_run(self, lane: NodeLane, shard_id: str, error: str | None = None) -> int:
        """The node stops running the shard without a result that counts: it left, handed the
        shard back, or failed it (`error`). Another copy is placed if none runs; the shard goes
        back to the queue only when no node runs it and no result awaits agreement. Returns 1
        if it went back to the queue."""
        lane.inflight.pop(shard_id, None)
        flight = self._flights.get(shard_id)
        if flight is None:
            return 0
        flight.runs.pop(lane.node_id, None)
        if error is not None:
            attempts = self._attempts.get(shard_id, 0) + 1
            self._attempts[shard_id] = attempts
            self._avoid.setdefault(shard_id, set()).add(lane.node_id)
            logger.warning(
                "node %s failed shard %s (attempt %d): %s", lane.node_id, shard_id, attempts, error
            )
            if attempts >= self._max_attempts:
                await self._store.fail(
                    flight.shard.job_id,
                    f"shard {shard_id} failed {attempts} times; last error: {error}",
                )
                self._drop_job(flight.shard.job_id)
                return 0
        if flight.results or flight.runs:
            # Another node runs it, or a result awaits a second opinion: top up the copies.
            short = flight.wanted - len(flight.results) - len(flight.runs) - flight.extra
            flight.extra += max(0, short)
            return 0
        del self._flights[shard_id]
        if shard_id not in await self._store.release([shard_id]):
            return 0  # done or cancelled meanwhile
        self._pending = {shard_id: flight.shard, **self._pending}
        return 1

    async def expire_nodes(self) -> None:
        for node_id in self._registry.expired():
            lane = self._lanes.get(node_id)
            if lane is not None:
                await self.detach(lane, reason="no heartbeat")

    async def hand_back(self, lane: NodeLane, shard_ids: list[str]) -> None:
        await _uncancellable(self._hand_back(lane, shard_ids))

    async def _hand_back(self, lane: NodeLane, shard_ids: list[str]) -> None:
        async with self._lock:
            lane.draining = True
            for shard_id in shard_ids:
                if shard_id in lane.inflight:
                    await self._end_run(lane, shard_id)
        await self._pump()

    def _held(self, lane: NodeLane, shard_id: str) -> QueuedShard | None:
        """The shard if the node holds it; None if it was revoked; an error if it never held it."""
        shard = lane.inflight.get(shard_id)
        if shard is None:
            if shard_id in lane.revoked:
                lane.revoked.discard(shard_id)
                lane.outbox.put_nowait(
                    ShardAck(shard_id, accepted=False, reason="shard was revoked")
                )
                return None
            raise FailedPreconditionError(f"node {lane.node_id} does not hold shard {shard_id}")
        return shard

    async def complete(self, lane: NodeLane, output: ShardOutput) -> None:
        """Record a result. A result that fails the checks counts as a failed attempt (the
        shard runs again) and is acknowledged as not accepted; only a result for a shard the
        node never held is an error. A verified shard is done once two results agree; the
        first valid result of an unverified one wins, and every other run is cancelled.

        The change runs to its end even if the caller is cancelled (the node hung up): a shard
        is never left between the database and the dispatcher's memory."""
        await _uncancellable(self._complete(lane, output))

    async def _complete(self, lane: NodeLane, output: ShardOutput) -> None:
        async with self._lock:
            shard = self._held(lane, output.shard_id)
            if shard is None:
                return
            try:
                await self._check_output(shard, output)
            except InvalidArgumentError as exc:
                lane.outbox.put_nowait(
                    ShardAck(output.shard_id, accepted=False, reason=exc.message)
                )
                await self._end_run(lane, output.shard_id, f"rejected result: {exc.message}")
            else:
                await self._take_result(lane, shard, output)
        self._notify(shard.job_id)
        await self._pump()

    async def _take_result(self, lane: NodeLane, shard: QueuedShard, output: ShardOutput) -> None:
        shard_id = shard.shard_id
        lane.inflight.pop(shard_id, None)
        lane.late = False
        flight = self._flights.get(shard_id)
        if flight is None:  # cannot happen while the lane holds it; keep the database the judge
            lane.outbox.put_nowait(ShardAck(shard_id, accepted=False, reason="not in flight"))
            return
        flight.runs.pop(lane.node_id, None)
        flight.results[lane.node_id] = output
        if flight.wanted == 1:
            await self._accept(flight, lane.node_id, ())
            return
        rows, dim = output.rows, output.dim
        matrices = {
            node: np.frombuffer(r.embeddings, dtype="<f4").reshape(rows, dim)
            for node, r in flight.results.items()
        }
        verdict = judge(matrices, self.policy.tolerance)
        if verdict is not None:
            await self._accept(flight, verdict.winner, verdict.agreed, verdict.caught)
            return
        if len(flight.results) >= flight.wanted:  # they disagree: one more node decides
            if flight.wanted >= MAX_OPINIONS:
                await self._store.fail(
                    shard.job_id,
                    f"shard {shard_id}: no two of {len(flight.results)} nodes agreed on its output",
                )
                self._drop_job(shard.job_id)
                return
            flight.wanted += 1
            flight.extra += 1
            logger.warning(
                "shard %s: results of %s disagree; a third node decides",
                shard_id,
                ", ".join(flight.results),
            )

    async def _accept(
        self,
        flight: _Flight,
        winner: str,
        agreed: tuple[str, ...],
        caught: tuple[tuple[str, float], ...] = (),
    ) -> None:
        """The shard is done with `winner`'s result (it is paid); other runs are cancelled."""
        shard_id = flight.shard.shard_id
        del self._flights[shard_id]
        self._cancel_runs(flight)
        try:
            job, finished = await self._store.complete_shard(winner, flight.results[winner])
        except FailedPreconditionError as exc:  # cancelled or failed meanwhile
            logger.info("result for shard %s not recorded: %s", shard_id, exc.message)
            return
        self._attempts.pop(shard_id, None)
        self._avoid.pop(shard_id, None)
        wrong = {node_id for node_id, _ in caught}
        for node_id in flight.results:
            lane = self._lanes.get(node_id)
            if lane is not None and node_id not in wrong:
                lane.outbox.put_nowait(ShardAck(shard_id, accepted=True))
        if agreed:
            reputations = await self._store.record_verification(shard_id, agreed, caught)
            for node_id, reputation in reputations.items():
                await self._set_reputation(node_id, reputation)
            for node_id, worst in caught:
                logger.warning(
                    "node %s returned a wrong output for shard %s (cosine %.4f to the agreed "
                    "one); this epoch's rewards withheld, reputation now %.2f",
                    node_id,
                    shard_id,
                    worst,
                    reputations.get(node_id, 0.0),
                )
                lane = self._lanes.get(node_id)
                if lane is not None:
                    lane.outbox.put_nowait(
                        ShardAck(shard_id, accepted=False, reason="output disagreed with peers")
                    )
        if finished:
            self._tokens.pop(job.job_id, None)
            self._sources.pop(job.job_id, None)
            logger.info("job %s succeeded: %d tokens processed", job.job_id, job.tokens_processed)

    async def _set_reputation(self, node_id: str, reputation: float) -> None:
        lane = self._lanes.get(node_id)
        if lane is None:
            return
        lane.reputation = reputation
        if reputation < self.policy.min_reputation:
            self._registry.drop(node_id, lane.token)
            await self._detach_locked(
                lane, reason=f"reputation {reputation:.2f} is below {self.policy.min_reputation}"
            )

    async def _check_output(self, shard: QueuedShard, output: ShardOutput) -> None:
        tokens = await self._job_tokens(shard.job_id)
        ran = windows_digest([tokens[w.document][w.start : w.end] for w in shard.spans])
        if output.tokens_digest != ran:
            raise InvalidArgumentError(
                f"shard {shard.shard_id}: the node ran other tokens than the shard's "
                f"(token digest {clip(output.tokens_digest, 16)}, expected {ran[:16]}…)"
            )
        dim = self._catalog.get(shard.model).spec.dim
        rows = len(shard.spans)
        if output.rows != rows or output.dim != dim:
            raise InvalidArgumentError(
                f"shard {shard.shard_id}: result is {output.rows}x{output.dim}, "
                f"expected {rows}x{dim}"
            )
        if len(output.embeddings) != rows * dim * 4:
            raise InvalidArgumentError(
                f"shard {shard.shard_id}: {len(output.embeddings)} bytes of embeddings, "
                f"expected {rows * dim * 4}"
            )
        if hashlib.sha256(output.embeddings).hexdigest() != output.digest:
            raise InvalidArgumentError(f"shard {shard.shard_id}: digest does not match the bytes")
        if not np.isfinite(np.frombuffer(output.embeddings, dtype="<f4")).all():
            raise InvalidArgumentError(f"shard {shard.shard_id}: embeddings are not all finite")

    async def fail(self, lane: NodeLane, shard_id: str, error: str) -> None:
        await _uncancellable(self._fail(lane, shard_id, error))

    async def _fail(self, lane: NodeLane, shard_id: str, error: str) -> None:
        async with self._lock:
            shard = self._held(lane, shard_id)
            if shard is None:
                return
            await self._end_run(lane, shard_id, error)
        self._notify(shard.job_id)
        await self._pump()

    async def check_stragglers(self) -> int:
        """Give a backup copy to every shard whose run is past its deadline; returns how many."""
        now = time.monotonic()
        backed = 0
        async with self._lock:
            for flight in self._flights.values():
                late = [n for n, deadline in flight.runs.items() if deadline < now]
                for node_id in late:
                    if (lane := self._lanes.get(node_id)) is not None:
                        lane.late = True
                if late and not flight.backed_up:
                    flight.backed_up = True
                    flight.extra += 1
                    backed += 1
                    logger.warning(
                        "shard %s on %s is past its deadline; a backup copy runs elsewhere",
                        flight.shard.shard_id,
                        ", ".join(late),
                    )
        if backed:
            await self._pump()
        return backed

    # -- placement ----------------------------------------------------------------------------

    def _candidates(self, shard: QueuedShard, exclude: set[str]) -> list[NodeLane]:
        return [
            lane
            for lane in self._lanes.values()
            if not lane.draining
            and not lane.late
            and lane.node_id not in exclude
            and (offer := lane.models.get(shard.model))
            and offer.sha256 == shard.model_sha256
        ]

    def _choose(self, shard: QueuedShard, lanes: list[NodeLane], backlog: int) -> str | None:
        loads = [
            NodeLoad(
                lane.node_id,
                lane.models[shard.model].tokens_per_second * max(lane.reputation, 0.01),
                lane.load(),
                lane.max_inflight - len(lane.inflight),
                fetch_seconds=0.0
                if lane.node_id in shard.local_nodes
                else peer_fetch_seconds(shard.read_bytes),
            )
            for lane in lanes
        ]
        return choose_node(shard.model_tokens, loads, backlog)

    async def _run_on(self, lane: NodeLane, flight: _Flight) -> None:
        shard = flight.shard
        offer = lane.models[shard.model]
        expected = (lane.load() + shard.model_tokens) / offer.tokens_per_second
        deadline = expected * self.policy.straggler_factor + self.policy.straggler_slack_s
        flight.runs[lane.node_id] = time.monotonic() + deadline
        flight.tried.add(lane.node_id)
        lane.inflight[shard.shard_id] = shard
        lane.outbox.put_nowait(await self._assignment(shard))

    async def _pump(self) -> None:
        async with self._lock:
            await self._place_copies()
            backlog = sum(s.model_tokens for s in self._pending.values())
            for shard_id, shard in list(self._pending.items()):
                if not any(len(lane.inflight) < lane.max_inflight for lane in self._lanes.values()):
                    return
                lanes = self._candidates(shard, self._avoid.get(shard_id, set()))
                lanes = lanes or self._candidates(shard, set())
                node_id = self._choose(shard, lanes, backlog)
                backlog -= shard.model_tokens
                if node_id is None:
                    continue
                del self._pending[shard_id]
                if not await self._store.mark_leased(shard_id, node_id):
                    logger.warning(
                        "shard %s is no longer pending; dropped from the queue", shard_id
                    )
                    continue
                verified = chosen_for_verification(shard_id, self.policy.verify_fraction)
                flight = _Flight(shard, wanted=2 if verified else 1, extra=int(verified))
                self._flights[shard_id] = flight
                await self._run_on(self._lanes[node_id], flight)
                self._notify(shard.job_id)
            await self._place_copies()

    async def _place_copies(self) -> None:
        """Place the extra copies that verifications, tie-breaks and backups asked for, each on
        a node that has not run the shard. A verification with no such node connected, and no
        run still on time, is given up (the result stands unverified)."""
        now = time.monotonic()
        for flight in list(self._flights.values()):
            while flight.extra > 0:
                lanes = self._candidates(flight.shard, flight.tried)
                if not lanes:
                    on_time = any(deadline >= now for deadline in flight.runs.values())
                    if not on_time and len(flight.results) == 1:
                        only = next(iter(flight.results))
                        logger.warning(
                            "shard %s: no other node to verify it with; %s's result stands",
                            flight.shard.shard_id,
                            only,
                        )
                        await self._accept(flight, only, ())
                    break
                chosen = self._choose(flight.shard, lanes, flight.shard.model_tokens)
                if chosen is None:
                    break
                flight.extra -= 1
                await self._run_on(self._lanes[chosen], flight)

    async def _job_tokens(self, job_id: str) -> list[npt.NDArray[np.uint32]]:
        tokens = self._tokens.get(job_id)
        if tokens is None:
            tokens = self._tokens[job_id] = await self._store.document_tokens(job_id)
        return tokens

    async def _assignment(self, shard: QueuedShard) -> Assignment:
        base = Assignment(shard.shard_id, shard.job_id, shard.model, shard.model_sha256, ())
        if shard.read_bytes:  # a dataset job: the node reads the documents itself
            sources = self._sources.get(shard.job_id)
            if sources is None:
                sources = self._sources[shard.job_id] = await self._store.document_sources(
                    shard.job_id
                )
            needed = sorted({w.document for w in shard.spans})
            return dataclasses.replace(
                base,
                sources=tuple((d, source) for d in needed if (source := sources[d]) is not None),
                spans=tuple((w.document, w.start, w.end) for w in shard.spans),
            )
        tokens = await self._job_tokens(shard.job_id)
        return dataclasses.replace(
            base, windows=tuple(tokens[w.document][w.start : w.end] for w in shard.spans)
        )

    async def shutdown(self) -> None:
        for lane in list(self._lanes.values()):
            lane.outbox.put_nowait(None)
