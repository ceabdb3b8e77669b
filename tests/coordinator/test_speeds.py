"""Observed speeds alone: a claim counts only up to what was seen."""

from __future__ import annotations

import pytest

from tokenweave.coordinator._speeds import ObservedSpeeds


def test_a_new_node_is_believed_up_to_the_initial_cap() -> None:
    speeds = ObservedSpeeds(initial_tokens_per_second=1000)
    assert speeds.believed("n", "m", claimed=9.9e9) == 1000
    assert speeds.believed("n", "m", claimed=400) == 400, "a modest claim stands"


def test_after_a_shard_the_cap_is_twice_what_was_seen() -> None:
    speeds = ObservedSpeeds(initial_tokens_per_second=1000)
    speeds.sent("n", "s1", now=10.0)
    assert speeds.finished("n", "s1", "m", tokens=3000, now=11.0) == pytest.approx(3000)
    assert speeds.believed("n", "m", claimed=9.9e9) == pytest.approx(6000)
    assert speeds.believed("n", "other model", claimed=9.9e9) == 1000


def test_queued_shards_are_timed_from_the_previous_result() -> None:
    """Two shards sent at once run one after the other: the second is timed from the first's
    result, not from when it was sent."""
    speeds = ObservedSpeeds(initial_tokens_per_second=1000)
    speeds.sent("n", "a", now=0.0)
    speeds.sent("n", "b", now=0.0)
    assert speeds.finished("n", "a", "m", tokens=1000, now=1.0) == pytest.approx(1000)
    assert speeds.finished("n", "b", "m", tokens=1000, now=2.0) == pytest.approx(1000)


def test_a_dropped_or_unknown_shard_teaches_nothing() -> None:
    speeds = ObservedSpeeds(initial_tokens_per_second=1000)
    speeds.sent("n", "a", now=0.0)
    speeds.dropped("n", "a")
    assert speeds.finished("n", "a", "m", tokens=10**9, now=0.001) is None
    assert speeds.observed("n", "m") is None
