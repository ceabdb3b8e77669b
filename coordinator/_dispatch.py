"""Dispatcher: the events that move shards through nodes, each applied under one lock.

The database (JobStore) is the truth; the dispatcher keeps what is in flight. Events: a job
arrives, a node attaches or leaves, a result or a failure comes back, a deadline passes. The
decisions come from the state machine in _flights.py, placement from _placer.py, judgements of
an output from the shard's workload, the queue and each run's bookkeeping from _runs.py. Every
change ends with `_pump`: it leases queued shards, oldest job first, to the nodes expected to
finish them first, and places the copies verification, tie-breaks and backups asked for.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Coroutine, Sequence
from typing import Any

from tokenweave.coordinator import _verify as verify
from tokenweave.coordinator._batches import Batches
from tokenweave.coordinator._claims import Instances, claim_limit
from tokenweave.coordinator._completion import Accepted
from tokenweave.coordinator._events import JobEvents
from tokenweave.coordinator._flights import (
    Accept,
    Dispute,
    Flight,
    Flights,
    GiveUp,
    Referee,
    Requeue,
)
from tokenweave.coordinator._jobs import JobStore
from tokenweave.coordinator._lanes import DetachReason, Lanes, NodeLane
from tokenweave.coordinator._nodes import NodeRegistry
from tokenweave.coordinator._outputs import JobOutputs
from tokenweave.coordinator._placer import Placer, WorkPolicy
from tokenweave.coordinator._placing import Placing
from tokenweave.coordinator._referee import LocalRunner
from tokenweave.coordinator._runs import PendingQueue, Runs
from tokenweave.coordinator._shield import to_the_end
from tokenweave.coordinator._stakes import Stakes
from tokenweave.coordinator._standing import Standing
from tokenweave.coordinator._verdicts import Verdicts
from tokenweave.coordinator._views import JobRequest, QueuedShard, ShardAck, ShardOutput
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, clip
from tokenweave.types import JobInfo

logger = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: JobStore,
        registry: NodeRegistry,
        standing: Standing,
        lanes: Lanes,
        events: JobEvents,
        instances: Instances,
        max_attempts: int,
        policy: WorkPolicy | None = None,
        referee: LocalRunner | None = None,
        stakes: Stakes | None = None,
    ) -> None:
        self._store = store
        self._registry = registry
        self._standing = standing
        self.lanes = lanes
        self._events = events
        self._instances = instances
        #: Unclaimed shards may be waiting in the database (another coordinator's job, or a
        #: dead one's shards): the next pump claims what this coordinator's nodes can take.
        self._unclaimed = True
        self.outputs = JobOutputs()  # what running tasks stream, for their jobs' clients
        self.policy = policy or WorkPolicy()
        self._pending = PendingQueue()
        self._flights = Flights(max_attempts)
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._placer = Placer(lanes, standing, self.policy, stakes)
        self._runs = Runs(self._flights, lanes, self._placer.speeds)
        self._placing = Placing(
            store,
            self._placer,
            lanes,
            self._pending,
            self._flights,
            self._runs,
            events,
            self.outputs,
        )
        self._referee = referee
        self._verdicts = Verdicts(
            store, standing, lanes, self._placer.stakes, self._background_task
        )
        self._last_tick = time.monotonic()
        self._results = Batches(self._take_results, self._background_task)
        self._pumps = Batches(self._pump_passes, self._background_task)
        standing.on_cutoff(self._cut_off)
        #: A change was cut short by a failure: `reconcile` should run soon.
        self.needs_reconcile = False

    async def recover(self) -> int:
        """Queue this coordinator's shards of unfinished jobs found in the database, and claim
        unowned ones."""
        self._pending.extend(await self._store.pending_shards())
        async with self._lock:
            await self._claim()
        return len(self._pending)

    @property
    def queued(self) -> int:
        """Shards in this coordinator's queue now."""
        return len(self._pending)

    def new_work(self) -> None:
        """Unclaimed shards may be in the database: claim at the next pump."""
        self._unclaimed = True

    async def claim(self) -> None:
        """Claim what this coordinator's nodes can take of the unclaimed shards, and place it."""
        self.new_work()
        await self._pump()

    async def _claim(self) -> None:
        if not self._unclaimed:
            return
        slots = sum(lane.max_inflight for lane in self.lanes)
        limit = claim_limit(self._instances.alone, slots, len(self._pending))
        if limit == 0:
            return
        shards = await self._instances.claim(limit)
        self._unclaimed = limit is not None and len(shards) >= limit  # more may be waiting
        if shards:
            self._pending.extend(shards)
            logger.debug(
                "claimed %d shards (%d coordinators alive, %d slots here)",
                len(shards),
                self._instances.alive_count,
                slots,
            )

    # -- jobs ---------------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> JobInfo:
        job, shards = await self._store.submit(request, claimed=self._instances.alone)
        if shards:
            self._pending.extend(shards)
        else:  # up for claiming, here and by the other coordinators
            self.new_work()
            self._instances.announce()
        logger.info(
            "job %s (%s): %d documents, %d tokens, %d items in %d shards",
            *(job.job_id, job.workload, job.documents, job.tokens, job.items, job.shards_total),
            extra={"job_id": job.job_id},
        )
        await self._pump()
        return await self.job(job.job_id)

    async def job(self, job_id: str) -> JobInfo:
        view = await self._store.get(job_id)
        return dataclasses.replace(view, nodes_busy=self.lanes.busy_with(job_id))

    async def cancel(self, job_id: str) -> JobInfo:
        async with self._lock:
            await self._store.cancel(job_id)
            self._drop_job(job_id)
        self._events.notify(job_id)
        await self._pump()
        return await self.job(job_id)

    async def _fail_job(self, job_id: str, error: str) -> None:
        await self._store.fail(job_id, error)
        self._drop_job(job_id)

    def _drop_job(self, job_id: str) -> None:
        self._pending.drop_job(job_id)
        self._runs.drop_job(job_id)

    # -- nodes --------------------------------------------------------------------------------

    async def attach(self, node_id: str, token: str) -> NodeLane:
        async with self._lock:
            self._registry.authenticate(node_id, token)
            self._standing.check_allowed(node_id)
            info = self._registry.session_info(node_id)
            old = self.lanes.get(node_id)
            if old is not None:  # first, so that what was asked of it is answered "left"
                await self._detach_locked(old, DetachReason.REPLACED)
            lane = NodeLane(
                node_id, token, info.max_inflight, {m.name: m for m in info.models}, info.workloads
            )
            self.lanes.add(lane)
        logger.info(
            "node %s attached (%d slots)", node_id, info.max_inflight, extra={"node_id": node_id}
        )
        if self._placer.stakes.policy.enabled:
            await self._placer.stakes.refresh([node_id])
        await self._pump()
        return lane

    @to_the_end
    async def detach(self, lane: NodeLane, reason: DetachReason) -> None:
        """Close a lane; whatever it held goes back to the queue (should the database fail
        half-way, `reconcile` finds what is left over at its next round)."""
        try:
            async with self._lock:
                await self._detach_locked(lane, reason)
        except Exception:
            self.needs_reconcile = True
            raise
        finally:
            await self._pump()  # what went back to the queue is placed, failure or not

    async def _detach_locked(self, lane: NodeLane, reason: DetachReason) -> None:
        self.lanes.remove(lane)
        # Even a lane already replaced gives back what it still holds.
        held = list(lane.inflight)
        requeued, failure = await self._end_runs(lane, held)
        lane.close()
        if held and reason is not DetachReason.CUT_OFF:
            await self._standing.record_abandoned(lane.node_id, len(held))
        if held or reason is not DetachReason.STREAM_CLOSED:
            logger.info(
                "node %s detached (%s); %d shards requeued",
                *(lane.node_id, reason, requeued),
                extra={"node_id": lane.node_id},
            )
        if failure is not None:
            raise failure

    async def _end_runs(self, lane: NodeLane, shard_ids: list[str]) -> tuple[int, Exception | None]:
        """`_end_run` for each shard: (how many went back to the queue, the first failure).
        Every run ends in memory even when the database fails on one of them: that shard is
        left leased there, and `reconcile` queues it again once the database is back."""
        requeued, failure = 0, None
        for shard_id in shard_ids:
            try:
                requeued += await self._end_run(lane, shard_id)
            except Exception as exc:
                self.needs_reconcile = True
                failure = failure or exc
        return requeued, failure

    def _cut_off(self, node_id: str, reputation: float) -> None:
        """Standing says the node fell below the threshold: it gets no more work (placement asks
        standing) and its lane closes, its shards going back to the queue."""
        lane = self.lanes.get(node_id)
        if lane is None:
            return
        self._registry.drop(node_id, lane.token)
        self._background_task(self.detach(lane, DetachReason.CUT_OFF))

    async def expire_nodes(self) -> None:
        for node_id in self._registry.expired():
            lane = self.lanes.get(node_id)
            if lane is not None:
                await self.detach(lane, DetachReason.NO_HEARTBEAT)

    @to_the_end
    async def hand_back(self, lane: NodeLane, shard_ids: list[str]) -> None:
        try:
            async with self._lock:
                lane.draining = True
                held = [s for s in shard_ids if s in lane.inflight]
                _, failure = await self._end_runs(lane, held)
                if failure is not None:
                    raise failure
                if held:
                    await self._standing.record_abandoned(lane.node_id, len(held))
        finally:
            await self._pump()  # what went back to the queue is placed, failure or not

    # -- results ------------------------------------------------------------------------------

    async def _held(self, lane: NodeLane, shard_id: str) -> QueuedShard | None:
        """The shard if the node holds it and may still report on it; None if it was revoked or
        the node is cut off (its run ends, uncounted); an error if it never held it."""
        if shard_id in lane.inflight and not self._standing.allowed(lane.node_id):
            lane.send(ShardAck(shard_id, accepted=False, reason="node is cut off"))
            await self._end_run(lane, shard_id)
            return None
        shard = lane.inflight.get(shard_id)
        if shard is None:
            if shard_id in lane.revoked:
                lane.revoked.discard(shard_id)
                lane.send(ShardAck(shard_id, accepted=False, reason="shard was revoked"))
                return None
            raise FailedPreconditionError(
                f"node {lane.node_id} does not hold shard {clip(shard_id)}"
            )
        return shard

    async def complete(self, lane: NodeLane, output: ShardOutput) -> None:
        """Record a result. A result that fails the checks counts as a failed attempt (the
        shard runs again) and is acknowledged as not accepted; only a result for a shard the
        node never held is an error. A verified shard is done once two results agree; the
        first valid result of an unverified one wins, and every other run is cancelled.
        Results that arrive while a batch is written form the next (`_take_results`)."""
        await self._results.submit((lane, output))

    async def _take_results(
        self, results: Sequence[tuple[NodeLane, ShardOutput]]
    ) -> list[BaseException | None]:
        """Judge a batch of results in arrival order, record the accepted ones together, then
        place what they freed; returns each result's error (None: handled)."""
        errors: list[BaseException | None] = [None] * len(results)
        jobs = set()
        async with self._lock:
            accepting: list[tuple[Flight, Accept]] = []
            for i, (lane, output) in enumerate(results):
                try:
                    shard = await self._held(lane, output.shard_id)
                    if shard is None:
                        continue
                    jobs.add(shard.job_id)
                    try:
                        verify.check_output(shard, output)
                    except InvalidArgumentError as exc:
                        lane.send(ShardAck(output.shard_id, accepted=False, reason=exc.message))
                        await self._end_run(
                            lane, output.shard_id, f"rejected result: {exc.message}"
                        )
                        continue
                    judged = await self._judge(lane, shard, output)
                    if judged is None:
                        continue
                    if judged[1].caught:
                        # A caught node's unchecked results are reopened when its verdict is
                        # recorded: those accepted before it in this batch must be in the
                        # database by then, and none after it may be accepted unchecked
                        # (standing changes with the verdict).
                        await self._accept(accepting)
                        await self._accept([judged])
                        accepting = []
                    else:
                        accepting.append(judged)
                except Exception as exc:
                    errors[i] = exc
            await self._accept(accepting)
        for job_id in jobs:
            self._events.notify(job_id)
        await self._pump()
        return errors

    async def _judge(
        self, lane: NodeLane, shard: QueuedShard, output: ShardOutput
    ) -> tuple[Flight, Accept] | None:
        """Take a checked result into its shard's flight: the acceptance it decides, if any (a
        dispute fails the job; a disagreement waits for a third node)."""
        self._runs.finished(lane, shard, time.monotonic())
        flight = self._flights.get(shard.shard_id)
        if flight is None:  # cannot happen while the lane holds it; keep the database the judge
            lane.send(ShardAck(shard.shard_id, accepted=False, reason="not in flight"))
            return None
        self._standing.record_success(lane.node_id)
        decision = self._flights.result(
            flight,
            lane.node_id,
            output,
            *verify.judging(shard, self.policy.tolerance),
            time.monotonic(),
            verify=not self._standing.vetted(lane.node_id),
        )
        if isinstance(decision, Accept):
            return flight, decision
        if isinstance(decision, Dispute):
            await self._fail_job(shard.job_id, decision.reason)
        elif len(flight.results) > 1:
            logger.warning(
                "shard %s: results of %s disagree; a third node decides",
                shard.shard_id,
                ", ".join(flight.results),
            )
        return None

    async def _accept(self, accepted: Sequence[tuple[Flight, Accept]]) -> None:
        """The shards are done with their winners' results (they are paid), recorded in one
        transaction; other runs are cancelled. Each verification's outcome is recorded first:
        a caught node's unchecked results go back in the queue before this shard can finish
        the job."""
        for flight, decision in accepted:
            self._flights.close(flight.shard_id)
            self._runs.cancel(flight)
            digests = {node: r.digest for node, r in flight.results.items()}
            verdict = await self._verdicts.record(flight.shard_id, decision, digests)
            for node_id, reopened in verdict.items():
                for withdrawn in reopened.withdrawn:  # a later stage built on its outputs
                    self._pending.discard(withdrawn)
                    self._runs.withdraw(withdrawn)
                for shard in reopened.shards:
                    self._flights.avoid(shard, node_id)
                    self._events.notify(shard.job_id)
                self._pending.to_front(reopened.shards)
        outcome = await self._store.complete_shards(
            [Accepted(f.shard, d.winner, f.results[d.winner]) for f, d in accepted]
        )
        for (flight, decision), completed in zip(accepted, outcome, strict=True):
            shard_id = flight.shard_id
            if isinstance(completed, FailedPreconditionError):  # cancelled or failed meanwhile
                logger.info("result for shard %s not recorded: %s", shard_id, completed.message)
                continue
            if isinstance(completed, Exception):  # the workload's meter or merge, the database
                logger.error("shard %s could not be completed", shard_id, exc_info=completed)
                await self._fail_job(
                    flight.shard.job_id,
                    f"shard {shard_id} could not be completed: "
                    f"{type(completed).__name__}: {clip(completed, 300)}",
                )
                continue
            wrong = {node_id for node_id, _ in decision.caught}
            for node_id in flight.results:
                lane = self.lanes.get(node_id)
                if lane is not None and node_id not in wrong:
                    lane.send(ShardAck(shard_id, accepted=True))
            job = completed.job
            if completed.added:
                self._pending.extend(completed.added)
                logger.info("job %s: next stage of %d shards", job.job_id, len(completed.added))
            if completed.finished:
                logger.info(
                    "job %s succeeded: %d tokens processed",
                    *(job.job_id, job.tokens_processed),
                    extra={"job_id": job.job_id},
                )

    @to_the_end
    async def fail(self, lane: NodeLane, shard_id: str, error: str) -> None:
        async with self._lock:
            shard = await self._held(lane, shard_id)
            if shard is None:
                return
            await self._end_run(lane, shard_id, error)
        self._events.notify(shard.job_id)
        await self._pump()

    async def _end_run(self, lane: NodeLane, shard_id: str, error: str | None = None) -> int:
        """The node stops running the shard without a result that counts. Returns 1 if the
        shard went back to the queue."""
        self._runs.ended(lane, shard_id)
        flight = self._flights.get(shard_id)
        if flight is None:
            return 0
        if error is not None:
            logger.warning(
                "node %s failed shard %s: %s",
                *(lane.node_id, shard_id, clip(error, 300)),
                extra={"node_id": lane.node_id, "shard_id": shard_id},
            )
            await self._standing.record_failure(lane.node_id)
        decision = self._flights.ended(
            flight, lane.node_id, error, vetted=self._standing.vetted(lane.node_id)
        )
        if isinstance(decision, GiveUp):
            await self._fail_job(flight.shard.job_id, decision.reason)
            return 0
        if not isinstance(decision, Requeue):
            return 0
        if shard_id not in await self._store.release([shard_id]):
            return 0  # done or cancelled meanwhile
        self._pending.to_front([flight.shard])
        return 1

    async def reconcile(self) -> int:
        """Queue again every shard of an unfinished job that the database holds as pending or
        leased but nothing here holds (neither queued nor flying); returns how many.

        A write lost mid-way (the database gone during a node's detach, say) leaves such a
        shard: memory has let it go, the database still says leased. Nothing would run it again
        until a restart; this finds it within a round (`CoordinatorServer._reap`)."""
        self.needs_reconcile = False
        async with self._lock:
            lost = [
                shard_id
                for shard_id in await self._store.unfinished()
                if shard_id not in self._pending and self._flights.get(shard_id) is None
            ]
            if not lost:
                return 0
            shards = await self._store.requeue(lost)
            self._pending.to_front(shards)
        if shards:
            logger.warning("%d shards held by no one were queued again", len(shards))
            await self._pump()
        return len(shards)

    async def check_stragglers(self) -> int:
        """Give a backup copy to every shard whose run is past its deadline; returns how many.
        Also gives up disputes nobody decided in time, and wakes the queue when a node's rest
        ends."""
        async with self._lock:
            now = time.monotonic()
            rested = self._standing.rests_ending(self._last_tick, now)
            self._last_tick = now
            if self._placer.stakes.due(now):
                self._background_task(self._placer.stakes.refresh(self.lanes.connected()))
            # A result waiting in this coordinator's own queue is not the node's delay: runs
            # are judged by the time when the oldest result waiting here came.
            late, backed = self._flights.overdue(
                now - self._results.lag(now), backups=not self._pending
            )
            for node_id in late:
                if (lane := self.lanes.get(node_id)) is not None:
                    lane.late = True
            for flight in backed[:5]:
                logger.warning(
                    "shard %s on %s is past its deadline; a backup copy runs elsewhere",
                    flight.shard_id,
                    ", ".join(flight.runs),
                    extra={"shard_id": flight.shard_id, "job_id": flight.shard.job_id},
                )
            if len(backed) > 5:
                logger.warning("%d more shards past their deadlines get backups", len(backed) - 5)
        # Copies still unplaced (a verifier's node gone, say) are tried again, and given up
        # once no node can take them in time (`_no_peer`): no other event may come to do it.
        if backed or rested or self._flights.disputed() or self._flights.wanting_copies():
            await self._pump()
        return len(backed)

    # -- placement ----------------------------------------------------------------------------

    async def _pump(self) -> None:
        """Place what can be placed now. Calls made while a pass runs share the next one: a
        pass looks at every node, and ten thousand nodes attaching at once (or a batch of
        results) must not cost ten thousand passes."""
        await self._pumps.submit(None)

    async def _pump_passes(self, calls: Sequence[None]) -> list[BaseException | None]:
        await self._pass()
        return [None] * len(calls)

    async def _pass(self) -> None:
        async with self._lock:
            await self._claim()
            await self._placing.place_copies(self._no_peer, self._fail_job)
            if not self._pending:  # nothing to place: no pass over every node either
                return
            await self._placing.place_queued(self._fail_job)
            await self._placing.place_copies(self._no_peer, self._fail_job)

    async def _no_peer(self, flight: Flight, now: float) -> None:
        decision = self._flights.no_peer(
            flight, now, self.policy.dispute_wait_s, referee=self._referee is not None
        )
        if isinstance(decision, Accept):
            logger.warning(
                "shard %s: no other node to verify it with; %s's result stands",
                flight.shard_id,
                decision.winner,
            )
            await self._accept([(flight, decision)])
        elif isinstance(decision, GiveUp):
            await self._fail_job(flight.shard.job_id, decision.reason)
        elif isinstance(decision, Referee):
            self._background_task(self._decide(flight))

    async def _decide(self, flight: Flight) -> None:
        """The referee runs the disputed shard; its output decides (see `Flights.refereed`)."""
        assert self._referee is not None
        shard = flight.shard
        output = await self._referee.output(shard, self._store.payload)
        async with self._lock:
            if output is None or self._flights.get(shard.shard_id) is not flight:
                return  # decided (a third node came) or dropped meanwhile; or `undecided` will
            decision = self._flights.refereed(
                flight, output, *verify.judging(shard, self.policy.tolerance)
            )
            if isinstance(decision, Accept):
                await self._accept([(flight, decision)])
            else:
                await self._fail_job(shard.job_id, decision.reason)
        self._events.notify(shard.job_id)
        await self._pump()

    def _background_task(self, change: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(change)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        for lane in self.lanes:
            lane.close()
