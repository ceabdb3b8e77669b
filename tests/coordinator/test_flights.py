"""The flight state machine alone: values in, decisions out (no database, no model)."""

from __future__ import annotations

import pytest

from tokenweave.coordinator._flights import (
    UNVETTED_FAILURE_FACTOR,
    Accept,
    Dispute,
    Flight,
    Flights,
    GiveUp,
    Referee,
    Requeue,
)
from tokenweave.coordinator._views import QueuedShard, ShardOutput


def _shard(shard_id: str = "job-0", job_id: str = "job") -> QueuedShard:
    return QueuedShard(shard_id, job_id, "embed", "m", "0" * 64, cost=100, detail=b"")


def _out(value: bytes, shard_id: str = "job-0") -> ShardOutput:
    return ShardOutput(shard_id, value, 10, 0.1, "", "cpu")


def _same(a: bytes, b: bytes) -> float:
    return 1.0 if a == b else 0.0


def test_an_unverified_shard_is_accepted_with_its_first_result() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "a", deadline=10.0, copy=False)
    assert flights.wanting_copies() == []
    assert flights.result(flight, "a", _out(b"x"), _same, 0.9, 0.0) == Accept("a")
    assert flight.runs == {}


def test_a_verified_shard_wants_a_second_node_and_agreement() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=True)
    flights.started(flight, "a", 10.0, copy=False)
    assert flights.wanting_copies() == [flight]
    flights.started(flight, "b", 10.0, copy=True)
    assert flights.wanting_copies() == []
    assert flights.result(flight, "a", _out(b"x"), _same, 0.9, 0.0) is None
    assert flights.result(flight, "b", _out(b"x"), _same, 0.9, 0.0) == Accept("a", ("a", "b"))


def test_a_disagreement_asks_a_third_node_and_catches_the_odd_one_out() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=True)
    flights.started(flight, "liar", 10.0, copy=False)
    flights.started(flight, "b", 10.0, copy=True)
    assert flights.result(flight, "liar", _out(b"lie"), _same, 0.9, 0.0) is None
    assert flights.result(flight, "b", _out(b"x"), _same, 0.9, 0.0) is None
    assert flight.wanted == 3
    assert flights.wanting_copies() == [flight]
    flights.started(flight, "c", 10.0, copy=True)
    verdict = flights.result(flight, "c", _out(b"x"), _same, 0.9, 0.0)
    assert verdict == Accept("b", ("b", "c"), (("liar", 0.0),))


def test_three_different_answers_are_a_dispute() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=True)
    for node, value in (("a", b"1"), ("b", b"2")):
        flights.started(flight, node, 10.0, copy=node != "a")
        assert flights.result(flight, node, _out(value), _same, 0.9, 0.0) is None
    flights.started(flight, "c", 10.0, copy=True)
    decision = flights.result(flight, "c", _out(b"3"), _same, 0.9, 0.0)
    assert isinstance(decision, Dispute)
    assert "no two of 3 nodes agreed" in decision.reason


def test_a_lost_run_requeues_and_failures_give_up_after_max_attempts() -> None:
    flights = Flights(max_attempts=2)
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "a", 10.0, copy=False)
    assert flights.ended(flight, "a", failed=None) == Requeue()
    assert flights.get("job-0") is None
    assert flights.avoided("job-0") == set(), "leaving is not failing"

    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "a", 10.0, copy=False)
    assert flights.ended(flight, "a", failed="boom") == Requeue()
    assert flights.avoided("job-0") == {"a"}
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "b", 10.0, copy=False)
    decision = flights.ended(flight, "b", failed="boom again")
    assert isinstance(decision, GiveUp)
    assert "failed 2 times; last error: boom again" in decision.reason


def test_a_lost_run_beside_another_is_topped_up_not_requeued() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=True)
    flights.started(flight, "a", 10.0, copy=False)
    flights.started(flight, "b", 10.0, copy=True)
    assert flights.result(flight, "a", _out(b"x"), _same, 0.9, 0.0) is None
    assert flights.ended(flight, "b", failed=None) is None
    assert flight.extra == 1, "the verification still needs a second result"
    assert flights.wanting_copies() == [flight]


def test_an_overdue_run_gets_one_backup() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "slow", deadline=5.0, copy=False)
    assert flights.overdue(now=4.0) == (set(), [])
    assert flights.overdue(now=6.0) == ({"slow"}, [flight])
    assert flights.overdue(now=7.0) == ({"slow"}, []), "one backup per flight"
    flights.started(flight, "fast", 20.0, copy=True)
    assert flights.result(flight, "fast", _out(b"x"), _same, 0.9, 0.0) == Accept("fast")


def test_no_backup_while_shards_wait_in_the_queue() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "slow", deadline=5.0, copy=False)
    assert flights.overdue(now=6.0, backups=False) == ({"slow"}, []), "late, not backed up"
    assert flights.wanting_copies() == []
    assert flights.overdue(now=7.0) == ({"slow"}, [flight]), "the queue emptied: backed up"


def test_a_lone_result_stands_once_no_run_is_on_time() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=True)
    flights.started(flight, "a", 5.0, copy=False)
    assert flights.result(flight, "a", _out(b"x"), _same, 0.9, 0.0) is None
    assert flights.no_peer(flight, 6.0, wait_s=60, referee=False) == Accept("a")


@pytest.mark.parametrize("verified", [False, True])
def test_dropping_a_job_forgets_its_flights_and_history(verified: bool) -> None:
    flights = Flights(max_attempts=3)
    keep = flights.lease(_shard("other-0", "other"), verified)
    flight = flights.lease(_shard(), verified)
    flights.started(flight, "a", 10.0, copy=False)
    flights.ended(flight, "a", failed="x")
    flight = flights.lease(_shard(), verified)
    assert flights.drop_job("job") == [flight]
    assert flights.get("job-0") is None
    assert flights.avoided("job-0") == set()
    assert flights.get("other-0") is keep
    assert flights.wanting_copies() == ([keep] if verified else [])


def test_which_shards_are_verified_depends_on_a_secret() -> None:
    """A node knows its shard ids, never the coordinator's secret: the sample it would predict
    from the ids alone (a public hash) is not the one that is checked."""
    import hashlib

    from tokenweave.coordinator._verify import chosen_for_verification

    ids = [f"job-{i}" for i in range(2000)]
    first = {i for i in ids if chosen_for_verification(i, 0.1, b"secret one")}
    second = {i for i in ids if chosen_for_verification(i, 0.1, b"secret two")}
    public = {
        i
        for i in ids
        if int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") < 2**64 // 10
    }
    assert 150 < len(first) < 250
    assert len(first & second) < 60, "another secret, another sample"
    assert len(first & public) < 60, "the public hash does not predict it"
    assert not any(chosen_for_verification(i, 0.0, b"secret one") for i in ids)


def _disputed(flights: Flights, now: float = 0.0) -> Flight:
    flight = flights.lease(_shard(), verified=True)
    for node, value in (("a", b"1"), ("b", b"2")):
        flights.started(flight, node, 5.0, copy=node != "a")
        assert flights.result(flight, node, _out(value), _same, 0.9, now) is None
    return flight


def test_a_dispute_with_no_third_node_goes_to_the_referee_once() -> None:
    flights = Flights(max_attempts=3)
    flight = _disputed(flights, now=1.0)
    assert flight.disputed_at == 1.0
    assert flights.disputed()
    assert flights.no_peer(flight, 6.0, wait_s=60, referee=True) == Referee()
    assert flights.no_peer(flight, 7.0, wait_s=60, referee=True) is None, "asked once"
    verdict = Flights.refereed(flight, b"2", _same, 0.9)
    assert verdict == Accept("b", ("b",), (("a", 0.0),))


def test_a_referee_that_agrees_with_nobody_punishes_nobody() -> None:
    flight = _disputed(Flights(max_attempts=3))
    decision = Flights.refereed(flight, b"3", _same, 0.9)
    assert isinstance(decision, Dispute)
    assert "agrees with none" in decision.reason


def test_a_dispute_with_no_one_to_decide_gives_up_after_the_wait() -> None:
    flights = Flights(max_attempts=3)
    flight = _disputed(flights, now=1.0)
    assert flights.no_peer(flight, 30.0, wait_s=60, referee=False) is None
    decision = flights.no_peer(flight, 61.0, wait_s=60, referee=False)
    assert isinstance(decision, GiveUp)
    assert "no other node decided within 60 s" in decision.reason


def test_a_result_of_a_node_no_longer_vetted_waits_for_a_second_opinion() -> None:
    flights = Flights(max_attempts=3)
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "caught", 10.0, copy=False)
    assert flights.result(flight, "caught", _out(b"x"), _same, 0.9, 0.0, verify=True) is None
    assert flight.wanted == 2
    assert flights.wanting_copies() == [flight]


def test_failures_of_new_nodes_alone_take_longer_to_fail_a_shard() -> None:
    """Fresh keys that fail every shard cannot fail a job with max_attempts failures: a shard
    gives up after that many only if a vetted node failed it too."""
    flights = Flights(max_attempts=2)
    for i in range(2 * UNVETTED_FAILURE_FACTOR):
        flight = flights.lease(_shard(), verified=False)
        flights.started(flight, f"sybil{i}", 10.0, copy=False)
        decision = flights.ended(flight, f"sybil{i}", failed="no", vetted=False)
        if i < 2 * UNVETTED_FAILURE_FACTOR - 1:
            assert decision == Requeue()
    assert isinstance(decision, GiveUp)

    flights = Flights(max_attempts=2)
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "sybil", 10.0, copy=False)
    assert flights.ended(flight, "sybil", failed="no", vetted=False) == Requeue()
    flight = flights.lease(_shard(), verified=False)
    flights.started(flight, "vetted", 10.0, copy=False)
    assert isinstance(flights.ended(flight, "vetted", failed="no", vetted=True), GiveUp)
