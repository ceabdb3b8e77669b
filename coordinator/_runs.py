"""PendingQueue and Runs: the dispatcher's two pieces of bookkeeping.

* `PendingQueue` — shards no node runs yet, in placement order: jobs in the order they came,
  and a shard that goes back (a run that failed or left, a caught node's unchecked results) at
  the front, since its job is the furthest along.
* `Runs` — where each shard runs. A run is written in three places that must move together: the
  shard's flight (which nodes run it, their deadlines), the node's lane (what it holds, what it
  is sent) and the observed speeds (when it was sent, so its finish times the node). `Runs`
  starts, finishes, ends and cancels runs in all three at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence

from tokenweave.coordinator._flights import Flight, Flights
from tokenweave.coordinator._lanes import Lanes, NodeLane
from tokenweave.coordinator._speeds import ObservedSpeeds
from tokenweave.coordinator._views import Assignment, QueuedShard


class PendingQueue:
    """Every operation is O(1) a shard (O(queued) only to drop a job): with 100,000 shards
    queued, a pass must not copy or re-sum the queue."""

    def __init__(self) -> None:
        self._shards: OrderedDict[str, QueuedShard] = OrderedDict()
        self._cost = 0
        #: When each shard joined the queue (monotonic): its wait is measured at its lease.
        self._since: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._shards)

    def __contains__(self, shard_id: object) -> bool:
        return shard_id in self._shards

    def __iter__(self) -> Iterator[QueuedShard]:
        """The shards in placement order. Live: the queue must not change while it is walked."""
        return iter(self._shards.values())

    def _put(self, shard: QueuedShard) -> None:
        old = self._shards.get(shard.shard_id)
        self._cost += shard.cost - (old.cost if old is not None else 0)
        self._shards[shard.shard_id] = shard
        self._since.setdefault(shard.shard_id, time.monotonic())

    def extend(self, shards: Iterable[QueuedShard]) -> None:
        """Queue a new job's shards (or those found at start) behind the rest."""
        for shard in shards:
            self._put(shard)

    def to_front(self, shards: Sequence[QueuedShard]) -> None:
        """Put `shards` ahead of the rest, in their order (moved there if queued already)."""
        for shard in reversed(shards):
            self._put(shard)
            self._shards.move_to_end(shard.shard_id, last=False)

    def remove(self, shard_id: str) -> float:
        """Take the shard out; returns the seconds it waited in the queue."""
        self._cost -= self._shards.pop(shard_id).cost
        return time.monotonic() - self._since.pop(shard_id)

    def discard(self, shard_id: str) -> None:
        """Remove the shard if it is queued."""
        if shard_id in self:
            self.remove(shard_id)

    def drop_job(self, job_id: str) -> None:
        for shard_id in [s for s, q in self._shards.items() if q.job_id == job_id]:
            self.remove(shard_id)

    def backlog(self) -> int:
        """The cost of everything queued (model tokens)."""
        return self._cost


class Runs:
    def __init__(self, flights: Flights, lanes: Lanes, speeds: ObservedSpeeds) -> None:
        self._flights = flights
        self._lanes = lanes
        self._speeds = speeds

    def start(
        self,
        lane: NodeLane,
        flight: Flight,
        payload: bytes,
        deadline: float,
        copy: bool,
        now: float,
    ) -> None:
        """Send the shard to the node: a run of the flight, held by the lane, timed."""
        shard = flight.shard
        self._flights.started(flight, lane.node_id, deadline, copy)
        self._speeds.sent(lane.node_id, shard.shard_id, now)
        lane.inflight[shard.shard_id] = shard
        lane.send(
            Assignment(
                shard.shard_id,
                shard.job_id,
                shard.workload,
                shard.model,
                shard.model_sha256,
                payload,
            )
        )

    def finished(self, lane: NodeLane, shard: QueuedShard, now: float) -> None:
        """The node returned a result that passed the checks: its time counts as its speed."""
        lane.inflight.pop(shard.shard_id, None)
        lane.late = False
        self._speeds.finished(lane.node_id, shard.shard_id, shard.model, shard.cost, now)

    def ended(self, lane: NodeLane, shard_id: str) -> None:
        """The node stops running the shard with no result that counts (its time is not timed)."""
        lane.inflight.pop(shard_id, None)
        self._speeds.dropped(lane.node_id, shard_id)

    def cancel(self, flight: Flight) -> None:
        """Take the shard back from every node still running it (a late result is dropped)."""
        for node_id in flight.runs:
            lane = self._lanes.get(node_id)
            if lane is not None and flight.shard_id in lane.inflight:
                lane.revoke(flight.shard_id)
            self._speeds.dropped(node_id, flight.shard_id)
        flight.runs.clear()

    def withdraw(self, shard_id: str) -> None:
        """Forget a shard the store cancelled, and take it back from the nodes running it."""
        if (flight := self._flights.close(shard_id)) is not None:
            self.cancel(flight)

    def drop_job(self, job_id: str) -> None:
        """Cancel every run of the job, on current lanes and on replaced ones that still list
        a run."""
        for flight in self._flights.drop_job(job_id):
            self.cancel(flight)
        for lane in self._lanes:
            for shard_id in [s for s, q in lane.inflight.items() if q.job_id == job_id]:
                lane.revoke(shard_id)
                self._speeds.dropped(lane.node_id, shard_id)
