"""Stakes: eligibility and share of work by stake, and slashing a caught node (a scripted chain
here; tests/integration/test_attacks.py slashes on the real embedded chain)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from tests.coordinator.test_dispatch import (
    Parts,
    _assignments,
    _job,
    _node,
    _output,
    catalog,
    make_parts,
)
from tokenweave.coordinator._catalog import ModelCatalog
from tokenweave.coordinator._placer import WorkPolicy
from tokenweave.coordinator._stakes import StakePolicy, Stakes

__all__ = ["catalog", "make_parts"]


class ScriptedChain:
    def __init__(self, stakes: dict[str, int]) -> None:
        self.stakes = stakes
        self.slashed: list[tuple[str, int, dict[str, object]]] = []
        self.down = False

    def stake_of(self, address: str) -> int:
        if self.down:
            raise ConnectionError("chain is away")
        return self.stakes.get(address, 0)

    def unbonding_of(self, address: str) -> int:
        return 0

    def slash(self, address: str, amount_wei: int, evidence: bytes) -> str:
        self.stakes[address] -= amount_wei
        self.slashed.append((address, amount_wei, json.loads(evidence)))
        return "0xtx"


async def test_eligibility_and_share_follow_the_stake() -> None:
    chain = ScriptedChain({"0xa": 100, "0xb": 10})
    stakes = Stakes(chain, StakePolicy(min_stake_wei=20, full_share_wei=50))
    await stakes.refresh(["0xa", "0xb", "0xc"])
    assert (stakes.eligible("0xa"), stakes.eligible("0xb"), stakes.eligible("0xc")) == (
        True,
        False,
        False,
    )
    assert stakes.share("0xa") == 1.0
    assert stakes.share("0xb") == 0.2
    chain.down = True
    await stakes.refresh(["0xa"])
    assert stakes.stake("0xa") == 100, "a failed read keeps the last value"


async def test_staking_off_by_default_reads_nothing() -> None:
    chain = ScriptedChain({})
    chain.down = True  # any read would fail
    stakes = Stakes(chain, StakePolicy())
    await stakes.refresh(["0xa"])
    assert stakes.eligible("0xa")
    assert stakes.share("0xa") == 1.0


async def test_a_caught_node_is_slashed_with_the_evidence(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    """Three staked nodes, every shard verified: the liar is caught, and slashed half of its
    stake with the shard, its output's digest and the agreeing nodes' on record."""
    dispatcher, registry, _ = await make_parts(WorkPolicy(verify_fraction=1.0))
    lanes = [await _node(registry, dispatcher, catalog) for _ in range(3)]
    liar = lanes[0]
    chain = ScriptedChain({lane.node_id: 1000 for lane in lanes})
    dispatcher._placer.stakes = stakes = Stakes(chain, StakePolicy(min_stake_wei=1))
    dispatcher._verdicts._stakes = stakes
    await stakes.refresh([lane.node_id for lane in lanes])
    await dispatcher.submit(_job())
    progress = True
    while progress and not chain.slashed:
        progress = False
        for lane in lanes:
            for assignment in _assignments(lane):
                progress = True
                await dispatcher.complete(lane, _output(assignment, seed=9 if lane is liar else -1))
        await asyncio.sleep(0.05)  # the slash runs in the background
    ((address, amount, evidence), *_) = chain.slashed
    assert (address, amount) == (liar.node_id, 500)
    assert evidence["node"] == liar.node_id
    assert len(str(evidence["output_sha256"])) == 64
    assert liar.node_id not in evidence["agreed"]  # type: ignore[operator]


async def test_a_node_without_the_minimum_stake_gets_no_work(
    make_parts: Callable[..., Awaitable[Parts]], catalog: ModelCatalog
) -> None:
    dispatcher, registry, _ = await make_parts(WorkPolicy(verify_fraction=0.0))
    poor = await _node(registry, dispatcher, catalog)
    rich = await _node(registry, dispatcher, catalog)
    chain = ScriptedChain({rich.node_id: 10**18})
    dispatcher._placer.stakes = stakes = Stakes(chain, StakePolicy(min_stake_wei=10**18))
    await stakes.refresh([poor.node_id, rich.node_id])
    await dispatcher.submit(_job())
    assert not _assignments(poor)
    assert _assignments(rich)
