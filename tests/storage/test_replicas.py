from __future__ import annotations

from collections import Counter

from tokenweave.storage import CID, RAW
from tokenweave.storage._replicas import Copy, placement, possession_proof, ranking, repair_plan

NODES = [f"node-{i}" for i in range(6)]
CIDS = [CID.of(RAW, str(i).encode()) for i in range(600)]


def test_placement_is_stable_and_spreads_evenly() -> None:
    held = Counter(n for cid in CIDS for n in placement(cid, NODES))
    assert sum(held.values()) == 3 * len(CIDS)
    assert max(held.values()) < 1.25 * min(held.values())
    assert placement(CIDS[0], NODES) == placement(CIDS[0], list(reversed(NODES)))
    assert placement(CIDS[0], NODES[:2]) == ranking(CIDS[0], NODES[:2])


def test_only_the_blocks_of_a_leaving_node_move() -> None:
    before = {cid: placement(cid, NODES) for cid in CIDS}
    after = {cid: placement(cid, NODES[1:]) for cid in CIDS}
    for cid in CIDS:
        if "node-0" not in before[cid]:
            assert after[cid] == before[cid]
        else:
            assert set(before[cid]) - {"node-0"} <= set(after[cid])


def test_repair_restores_the_replication_factor() -> None:
    providers = {cid: placement(cid, NODES) for cid in CIDS}
    live = set(NODES) - {"node-2"}
    copies, lost = repair_plan(providers, live)
    assert lost == []
    assert {c.cid for c in copies} == {cid for cid, h in providers.items() if "node-2" in h}
    for copy in copies:
        assert copy.target in live
        assert copy.target not in providers[copy.cid]
        assert "node-2" not in copy.sources
    healed = {cid: set(h) & live for cid, h in providers.items()}
    for copy in copies:
        healed[copy.cid].add(copy.target)
    assert all(len(h) == 3 for h in healed.values())


def test_blocks_with_no_live_holder_are_reported_lost() -> None:
    cid = CIDS[0]
    copies, lost = repair_plan({cid: ["gone"]}, live=set(NODES))
    assert (copies, lost) == ([], [cid])


def test_holders_within_the_grace_period_still_count() -> None:
    providers = {cid: placement(cid, NODES) for cid in CIDS}
    live = set(NODES) - {"node-2"}
    assert repair_plan(providers, live, returning={"node-2"}) == ([], [])
    # Only one of three holders live, one returning: a single copy brings it back to three.
    cid = CIDS[0]
    holders = placement(cid, NODES)
    copies, lost = repair_plan({cid: holders}, {holders[0], "node-x"}, returning={holders[1]})
    assert lost == []
    assert copies == [Copy(cid, (holders[0],), "node-x")]


def test_a_block_held_only_by_returning_nodes_is_not_lost_yet() -> None:
    cid = CIDS[0]
    assert repair_plan({cid: ["away"]}, live=set(NODES), returning={"away"}) == ([], [])


def test_a_node_that_refused_a_block_is_passed_over() -> None:
    cid = CIDS[0]
    order = ranking(cid, NODES)
    holders = order[:2]
    copies, _ = repair_plan({cid: holders}, set(NODES))
    assert [c.target for c in copies] == [order[2]]
    copies, _ = repair_plan({cid: holders}, set(NODES), avoid={cid: {order[2]}})
    assert [c.target for c in copies] == [order[3]]


def test_possession_proofs_need_the_bytes() -> None:
    assert possession_proof(b"n1", b"block") == possession_proof(b"n1", b"block")
    assert possession_proof(b"n1", b"block") != possession_proof(b"n2", b"block")
    assert possession_proof(b"n1", b"block") != possession_proof(b"n1", b"blocc")
