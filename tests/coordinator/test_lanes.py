"""Request/reply correlation on lanes, without a node: answers, timeouts, departures."""

from __future__ import annotations

import asyncio

from tokenweave.coordinator._lanes import Lanes, NodeLane
from tokenweave.coordinator._views import AuditChallenge, StoreBlock


def _lane(node_id: str = "n1") -> NodeLane:
    return NodeLane(node_id, "token", 2, {}, frozenset({"embed"}))


async def test_concurrent_asks_for_one_block_share_one_request() -> None:
    lanes, lane = Lanes(), _lane()
    lanes.add(lane)
    asks = [asyncio.create_task(lanes.keep_block("n1", StoreBlock("c", b"x"), 5)) for _ in range(3)]
    await asyncio.sleep(0)
    assert lane.outbox.qsize() == 1
    lanes.block_kept("n1", "c", ok=True, error="")
    assert await asyncio.gather(*asks) == ["", "", ""]


async def test_a_timed_out_ask_is_withdrawn_and_asked_anew() -> None:
    lanes, lane = Lanes(), _lane()
    lanes.add(lane)
    answer = await lanes.keep_block("n1", StoreBlock("c", b"x"), 0.01)
    assert "did not confirm block c" in answer
    assert lanes._blocks._waiting == {}, "nothing left waiting"
    again = asyncio.create_task(lanes.keep_block("n1", StoreBlock("c", b"x"), 5))
    await asyncio.sleep(0)
    assert lane.outbox.qsize() == 2, "the second ask is sent again, not merged into a dead one"
    lanes.block_kept("n1", "c", ok=False, error="disk full")
    assert await again == "disk full"


async def test_a_node_that_leaves_answers_what_was_asked_of_it() -> None:
    lanes, lane = Lanes(), _lane()
    lanes.add(lane)
    audit = asyncio.create_task(lanes.audit("n1", AuditChallenge("c", b"nonce"), 30))
    block = asyncio.create_task(lanes.keep_block("n1", StoreBlock("c", b"x"), 30))
    await asyncio.sleep(0)
    assert lanes.remove(lane)
    assert (await audit).left
    assert "left before storing block c" in await block
    assert (await lanes.audit("n1", AuditChallenge("c", b"n"), 1)).left  # not connected


async def test_a_late_or_unasked_answer_is_ignored() -> None:
    lanes, lane = Lanes(), _lane()
    lanes.add(lane)
    lanes.block_kept("n1", "never-asked", ok=True, error="")
    lanes.audit_answered("n2", "c", b"n", answer=None)  # type: ignore[arg-type]
    assert lanes._blocks._waiting == {}
