"""Flights: the state machine of leased shards, without I/O.

A shard in flight has runs (node → deadline), results waiting for agreement, and a number of
copies still to place. Every event — a run starts, a result arrives, a run ends without one, a
deadline passes — changes that state and says what the engine must do next:

    lease     → Flight (1 result wanted; 2 with one extra copy for a verified shard, placed
                at once, or once the first result is in when the verifier checks a result)
    result    → Accept(winner, agreed, caught) | Dispute(reason) | None (wait for more); a
                result from a node that is not (or no longer) vetted is verified even when its
                flight was not
    run ended → Requeue | GiveUp(reason) | None (other runs or results carry it on)
    overdue   → the late nodes, and one backup copy per late flight
    no peer   → Accept of a lone result when no other node can verify it and none is running;
                a dispute with no third node is decided by the referee's own run (`refereed`),
                or given up after a bounded wait (`undecided`)

A shard gives up after `max_attempts` failures only if one of them came from a vetted node, or
after three times as many from new nodes: fresh keys that fail every shard cannot fail a job.

The dispatcher applies the decisions (database, lanes, standing); this module can be tested
with nothing but values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenweave.coordinator._verify import Similarity, judge
from tokenweave.coordinator._views import QueuedShard, ShardOutput

#: Results a shard may collect before the coordinator gives up on agreement.
MAX_OPINIONS = 3
#: Failures from nodes not yet vetted count this many times less towards giving a shard up.
UNVETTED_FAILURE_FACTOR = 3


@dataclass(frozen=True, slots=True)
class Accept:
    """The shard is done with `winner`'s result; `agreed` and `caught` are the verification's
    outcome (empty for an unverified shard)."""

    winner: str
    agreed: tuple[str, ...] = ()
    caught: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Dispute:
    """No two of MAX_OPINIONS results agree: the job cannot be trusted to finish."""

    reason: str


@dataclass(frozen=True, slots=True)
class Referee:
    """No node can decide the dispute: the coordinator runs the shard itself."""


@dataclass(frozen=True, slots=True)
class Requeue:
    """No node runs the shard and no result waits: it goes back to the queue."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """The shard failed too often: its job fails."""

    reason: str


@dataclass(eq=False)
class Flight:
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
    #: Monotonic time its results first disagreed (a third opinion is wanted since).
    disputed_at: float | None = None
    #: The coordinator runs the shard itself to decide a dispute.
    refereeing: bool = False

    @property
    def shard_id(self) -> str:
        return self.shard.shard_id

    def on_time(self, now: float) -> bool:
        return any(deadline >= now for deadline in self.runs.values())


@dataclass(slots=True)
class _History:
    """What a shard's earlier attempts left behind (it outlives each flight)."""

    job_id: str
    failures: int = 0
    #: Failures that came from vetted nodes.
    vetted_failures: int = 0
    #: Nodes that failed it: its next lease goes elsewhere when it can.
    avoid: set[str] = field(default_factory=set)


class Flights:
    def __init__(self, max_attempts: int) -> None:
        self._max_attempts = max_attempts
        self._flights: dict[str, Flight] = {}
        #: Flights with copies to place, in the order they asked.
        self._wanting: dict[str, Flight] = {}
        self._history: dict[str, _History] = {}

    def get(self, shard_id: str) -> Flight | None:
        return self._flights.get(shard_id)

    def avoided(self, shard_id: str) -> set[str]:
        history = self._history.get(shard_id)
        return history.avoid if history is not None else set()

    def _want(self, flight: Flight, copies: int) -> None:
        flight.extra += copies
        if flight.extra > 0:
            self._wanting.setdefault(flight.shard_id, flight)

    def wanting_copies(self) -> list[Flight]:
        """Flights that asked for more copies than they have, oldest request first."""
        return list(self._wanting.values())

    # -- events -------------------------------------------------------------------------------

    def avoid(self, shard: QueuedShard, node_id: str) -> None:
        """The shard's next lease goes elsewhere than `node_id` when it can."""
        self._history.setdefault(shard.shard_id, _History(shard.job_id)).avoid.add(node_id)

    def lease(self, shard: QueuedShard, verified: bool, after_result: bool = False) -> Flight:
        """A new flight; a verified one wants a second copy now, or (`after_result`: its
        workload's verifier checks a result) once the first result is in."""
        flight = Flight(shard, wanted=2 if verified else 1)
        self._flights[shard.shard_id] = flight
        if verified and not after_result:
            self._want(flight, 1)
        return flight

    def started(self, flight: Flight, node_id: str, deadline: float, copy: bool) -> None:
        """A run of the flight began on `node_id` (`copy`: one of its extra copies)."""
        flight.runs[node_id] = deadline
        flight.tried.add(node_id)
        if copy:
            flight.extra -= 1
            if flight.extra <= 0:
                self._wanting.pop(flight.shard_id, None)

    def result(
        self,
        flight: Flight,
        node_id: str,
        output: ShardOutput,
        similarity: Similarity,
        tolerance: float,
        now: float,
        verify: bool = False,
    ) -> Accept | Dispute | None:
        """A checked result from `node_id`: the verdict, or None while more are needed.
        `verify`: the node is not vetted (it may have been caught since the shard was leased),
        so its result waits for a second opinion even if the shard was not sampled."""
        flight.runs.pop(node_id, None)
        flight.results[node_id] = output
        if flight.wanted == 1 and verify:
            flight.wanted = 2
        if flight.wanted == 1:
            return Accept(node_id)
        outputs = {node: r.output for node, r in flight.results.items()}
        verdict = judge(outputs, similarity, tolerance)
        if verdict is not None:
            return Accept(verdict.winner, verdict.agreed, verdict.caught)
        if len(flight.results) < flight.wanted:
            # The opinions still wanted that no run or copy will give (a deferred verifier).
            short = flight.wanted - len(flight.results) - len(flight.runs) - flight.extra
            self._want(flight, max(0, short))
            return None
        if flight.wanted >= MAX_OPINIONS:
            return Dispute(
                f"shard {flight.shard_id}: no two of {len(flight.results)} nodes agreed on its "
                "output"
            )
        flight.wanted += 1  # they disagree: one more node decides
        if flight.disputed_at is None:
            flight.disputed_at = now
        self._want(flight, 1)
        return None

    @staticmethod
    def refereed(
        flight: Flight, output: bytes, similarity: Similarity, tolerance: float
    ) -> Accept | Dispute:
        """The referee (the coordinator's own run) decides a dispute: the first result that
        agrees with it wins, every result that does not is caught. When it agrees with none,
        nobody is punished on its word alone and the shard cannot be trusted."""
        scores = {node: similarity(r.output, output) for node, r in flight.results.items()}
        agreeing = tuple(node for node, score in scores.items() if score >= tolerance)
        if not agreeing:
            return Dispute(
                f"shard {flight.shard_id}: the coordinator's own run agrees with none of the "
                f"{len(scores)} results of {', '.join(scores)}"
            )
        caught = tuple((node, score) for node, score in scores.items() if score < tolerance)
        return Accept(agreeing[0], agreeing, caught)

    @staticmethod
    def undecided(flight: Flight, now: float, wait_s: float) -> GiveUp | None:
        """A dispute that no third opinion settled within `wait_s`: the job gives up rather
        than waiting for ever."""
        if flight.disputed_at is None or now - flight.disputed_at < wait_s:
            return None
        return GiveUp(
            f"shard {flight.shard_id}: the results of {', '.join(flight.results)} disagree and "
            f"no other node decided within {wait_s:g} s"
        )

    def ended(
        self, flight: Flight, node_id: str, failed: str | None, vetted: bool = True
    ) -> Requeue | GiveUp | None:
        """`node_id` stopped running the shard without a result that counts: it left, handed it
        back, or failed it (`failed` says how; `vetted`: whether the node has a record)."""
        flight.runs.pop(node_id, None)
        if failed is not None:
            history = self._history.setdefault(flight.shard_id, _History(flight.shard.job_id))
            history.failures += 1
            history.vetted_failures += vetted
            history.avoid.add(node_id)
            if history.failures >= self._max_attempts and (
                history.vetted_failures
                or history.failures >= self._max_attempts * UNVETTED_FAILURE_FACTOR
            ):
                return GiveUp(
                    f"shard {flight.shard_id} failed {history.failures} times; last error: {failed}"
                )
        if flight.results or flight.runs:
            # Another node runs it, or a result awaits a second opinion: top up the copies.
            short = flight.wanted - len(flight.results) - len(flight.runs) - flight.extra
            self._want(flight, max(0, short))
            return None
        self._remove(flight.shard_id)
        return Requeue()

    def overdue(self, now: float, backups: bool = True) -> tuple[set[str], list[Flight]]:
        """Nodes with a run past its deadline, and the flights that now get a backup copy (one
        each, the first time they are late). `backups` False: none yet — while shards wait
        in the queue, a free slot runs one of them rather than a second copy (MapReduce's
        rule: backups near the end), and a late flight is backed up once the queue is empty."""
        late_nodes: set[str] = set()
        backed: list[Flight] = []
        for flight in self._flights.values():
            late = [node for node, deadline in flight.runs.items() if deadline < now]
            late_nodes.update(late)
            if late and backups and not flight.backed_up:
                flight.backed_up = True
                self._want(flight, 1)
                backed.append(flight)
        return late_nodes, backed

    def no_peer(
        self, flight: Flight, now: float, wait_s: float, referee: bool
    ) -> Accept | GiveUp | Referee | None:
        """No other node can run a copy the flight wants. Once no run of it is on time, a lone
        result stands, unverified; a dispute goes to the referee (once), or without one is
        given up after `wait_s`; otherwise it waits for a node."""
        if flight.on_time(now):
            return None
        if len(flight.results) == 1:
            return Accept(next(iter(flight.results)))
        if flight.disputed_at is None:
            return None
        if referee and not flight.refereeing:
            flight.refereeing = True
            return Referee()
        return self.undecided(flight, now, wait_s)

    def disputed(self) -> bool:
        """Whether a flight waits for a third opinion (its wait may run out)."""
        return any(f.disputed_at is not None for f in self._wanting.values())

    def close(self, shard_id: str) -> Flight | None:
        """The shard is done (or its job is): forget its flight and history."""
        self._history.pop(shard_id, None)
        return self._remove(shard_id)

    def drop_job(self, job_id: str) -> list[Flight]:
        """Forget every flight and history of a job (cancelled or failed); returns the flights
        whose runs must be taken back."""
        self._history = {s: h for s, h in self._history.items() if h.job_id != job_id}
        dropped = [f for f in self._flights.values() if f.shard.job_id == job_id]
        for flight in dropped:
            self._remove(flight.shard_id)
        return dropped

    def _remove(self, shard_id: str) -> Flight | None:
        self._wanting.pop(shard_id, None)
        return self._flights.pop(shard_id, None)
