"""`tokenweave node stake/unstake/withdraw` against a RewardsService on the embedded chain: the
node's key signs, the coordinator relays, the stake moves on chain."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.coordinator.test_relay import earn, serve_rewards
from tokenweave.cli import main
from tokenweave.cli._stake_cmd import parse_amount
from tokenweave.coordinator._reward_chain import open_reward_chain
from tokenweave.errors import InvalidArgumentError
from tokenweave.node import NodeIdentity

TOKEN = 10**18


def test_a_node_action_never_makes_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`node claim` in a folder with no key (the trap: a brand-new key claims nothing) is
    refused before anything is asked of a coordinator, and leaves no key behind."""
    monkeypatch.chdir(tmp_path)
    assert main(["node", "claim", "--coordinator", "127.0.0.1:9"]) == 4  # NOT_FOUND
    assert main(["node", "--data-dir", "elsewhere", "stake", "1"]) == 4
    assert list(tmp_path.iterdir()) == []


def test_amounts_are_read_as_twv() -> None:
    assert parse_amount("2.5") == 25 * TOKEN // 10
    assert parse_amount("0.000000000000000001") == 1
    for bad in ("0", "-1", "abc", "nan", "1e-19", "inf"):
        with pytest.raises(InvalidArgumentError, match="positive amount of TWV"):
            parse_amount(bad)


async def test_stake_unstake_and_withdraw_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where a key made by mistake would land (./node-data)
    chain = open_reward_chain("embedded", None, tmp_path / "coordinator")
    data_dir = tmp_path / "node"
    address = NodeIdentity.load_or_create(data_dir).address
    async for service in serve_rewards(tmp_path, chain):
        await earn(service, address)  # 5 TWV

        where = ["--data-dir", str(data_dir), "--coordinator", service.address]

        def cli(*args: str) -> int:
            return main(["node", *args, *where])  # noqa: B023 - called within the loop

        # Flags mean the same before the action: claimed with this node's key, not a new one.
        flags_first = ["node", *where, "claim"]
        assert await asyncio.to_thread(main, flags_first) == 0
        assert not (tmp_path / "node-data").exists()
        assert chain.balance(address) == 5 * TOKEN
        assert await asyncio.to_thread(cli, "stake", "3") == 0
        assert chain.stake_of(address) == 3 * TOKEN
        assert chain.balance(address) == 2 * TOKEN
        assert await asyncio.to_thread(cli, "unstake", "1.5") == 0
        assert chain.stake_of(address) == 15 * TOKEN // 10
        assert chain.staking.unbonding_of(address).amount == 15 * TOKEN // 10
        assert await asyncio.to_thread(cli, "withdraw") == 4  # refused: Staking__StillUnbonding
        assert await asyncio.to_thread(cli, "stake", "100") == 4  # more than it holds
        assert await asyncio.to_thread(cli, "stake", "nothing") == 2  # usage
        assert chain.stake_of(address) == 15 * TOKEN // 10
