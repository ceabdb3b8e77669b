"""Placing: what a dispatcher pass does with the dispatcher's lock held — choose nodes for the
queued shards, lease them, start them, and start the extra copies flights want.

The dispatcher (`_dispatch.py`) decides when a pass runs (passes are coalesced: `Batches`); this
module is the pass. It reads and changes the dispatcher's queue, flights, runs and lanes, which
it is given at construction and shares with the dispatcher.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from tokenweave import workloads
from tokenweave.coordinator import _verify as verify
from tokenweave.coordinator._events import JobEvents
from tokenweave.coordinator._flights import Flight, Flights
from tokenweave.coordinator._jobs import JobStore
from tokenweave.coordinator._lanes import Lanes, NodeLane
from tokenweave.coordinator._metrics import LEASE_WAIT
from tokenweave.coordinator._outputs import JobOutputs
from tokenweave.coordinator._placer import PlacementRound, Placer
from tokenweave.coordinator._runs import PendingQueue, Runs
from tokenweave.coordinator._views import QueuedShard

logger = logging.getLogger(__name__)

#: Fails a job with a reason (the dispatcher's: the store, then its memory).
FailJob = Callable[[str, str], Awaitable[None]]
#: Decides a flight no other connected node can take a copy of (`Dispatcher._no_peer`).
NoPeer = Callable[[Flight, float], Awaitable[None]]


class Placing:
    def __init__(
        self,
        store: JobStore,
        placer: Placer,
        lanes: Lanes,
        pending: PendingQueue,
        flights: Flights,
        runs: Runs,
        events: JobEvents,
        outputs: JobOutputs,
    ) -> None:
        self._store = store
        self._placer = placer
        self._lanes = lanes
        self._pending = pending
        self._flights = flights
        self._runs = runs
        self._events = events
        self._outputs = outputs

    async def place_queued(self, fail_job: FailJob) -> None:
        """Lease what the queue's pass chooses, in one statement, and start it: payloads read
        in one statement too. A lease the database refuses (the shard is no longer pending
        here) drops the shard from the queue; the database failing leaves all of it queued."""
        chosen = self._choose()
        waited = {shard.shard_id: self._pending.remove(shard.shard_id) for shard, _, _ in chosen}
        try:
            leased = await self._store.lease([(s.shard_id, lane.node_id) for s, lane, _ in chosen])
        except BaseException:  # the database: nothing was leased; all of it stays queued
            for shard, lane, _ in chosen:
                lane.inflight.pop(shard.shard_id, None)
            self._pending.to_front([shard for shard, _, _ in chosen])
            raise
        starts = []
        for shard, lane, verified in chosen:
            if shard.shard_id not in leased:
                lane.inflight.pop(shard.shard_id, None)
                logger.warning(
                    "shard %s is no longer pending; dropped from the queue", shard.shard_id
                )
                continue
            LEASE_WAIT.observe(waited[shard.shard_id])
            after = workloads.get(shard.workload).verifies_results
            starts.append((lane, self._flights.lease(shard, verified, after), False))
            self._events.notify(shard.job_id)
        await self.start(starts, fail_job)

    def _choose(self) -> list[tuple[QueuedShard, NodeLane, bool]]:
        """One pass over the queue, oldest first: the shards to lease now, each with its lane
        and whether it is verified. Each chosen shard holds its lane's slot at once (it is put
        among the lane's shards, and taken out again if its lease does not happen)."""
        backlog = self._pending.backlog()
        placing = PlacementRound(self._placer, self._lanes)
        chosen = []
        for shard in self._pending:
            if placing.free <= 0:
                break
            lane = placing.lane_for(shard, self._flights.avoided(shard.shard_id), backlog)
            backlog -= shard.cost
            if lane is None:
                continue
            lane.inflight[shard.shard_id] = shard
            chosen.append(
                (shard, lane, self._placer.verify(shard, lane, placing.candidates(shard)))
            )
        return chosen

    async def place_copies(self, no_peer: NoPeer, fail_job: FailJob) -> None:
        """Place the extra copies that verifications, tie-breaks and backups asked for, each on
        a node that has not run the shard. A verification with no such node connected, and no
        run still on time, is given up (the result stands unverified).

        A pass costs O(copies wanted) plus O(nodes) once per kind of shard (model file and
        workload): with thousands of backups wanted and every node busy, looking at every node
        for every copy stalled a 10,000-node coordinator for minutes."""
        wanting = self._flights.wanting_copies()
        if not wanting:
            return
        now = time.monotonic()
        kinds: dict[tuple[str, str, str], tuple[set[str], list[NodeLane]]] = {}
        for flight in wanting:
            shard = flight.shard
            kind = (shard.model, shard.model_sha256, shard.workload)
            if kind not in kinds:
                lanes = self._placer.candidates(shard, frozenset())
                kinds[kind] = ({lane.node_id for lane in lanes}, lanes)
            everyone, lanes = kinds[kind]
            while flight.extra > 0:
                if len(everyone) <= sum(n in everyone for n in flight.tried):
                    # No node it has not run on is connected.
                    await no_peer(flight, now)
                    break
                free = [
                    lane
                    for lane in lanes
                    if lane.node_id not in flight.tried and lane.free_slots() > 0
                ]
                lane = self._placer.choose(shard, free, shard.cost) if free else None
                if lane is None:
                    break
                lane.inflight[flight.shard_id] = flight.shard  # its slot, until it starts
                await self.start([(lane, flight, True)], fail_job)
            # Lanes that filled up are dropped from the kind's list as they are found.
            kinds[kind] = (everyone, [lane for lane in lanes if lane.free_slots() > 0])

    async def start(
        self, starts: Sequence[tuple[NodeLane, Flight, bool]], fail_job: FailJob
    ) -> None:
        """Send each flight's shard to its lane, (lane, flight, copy) triples, the payloads
        read in one statement. A payload that cannot be read (its file lost in a crash) fails
        its job."""
        payloads = await self._store.payloads([flight.shard_id for _, flight, _ in starts])
        now = time.monotonic()
        for lane, flight, copy in starts:
            if self._flights.get(flight.shard_id) is not flight:  # its job failed meanwhile
                continue
            shard, payload = flight.shard, payloads[flight.shard_id]
            if isinstance(payload, Exception):
                lane.inflight.pop(shard.shard_id, None)
                if not flight.runs:
                    self._flights.close(shard.shard_id)
                await fail_job(shard.job_id, str(payload))
                continue
            if copy and flight.results:  # a verifier: it checks the first result (the claim)
                claim = next(iter(flight.results.values())).output
                payload = verify.verification_payload(shard, payload, claim)
            elif not copy:  # the run of record: it carries on what a lost run streamed, if any
                payload = self._outputs.carry_on(shard, payload, lane.node_id)
            deadline = now + self._placer.deadline(lane, shard)
            self._runs.start(lane, flight, payload, deadline, copy, now)
