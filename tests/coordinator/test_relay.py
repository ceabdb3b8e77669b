"""The claim relay (RewardsService.SendTransaction) served over gRPC on a real chain: it sends only
calls to the reward contracts, only with the sender's next nonce, only what would succeed, and
never lets relayed transactions hold up the rest of the service.

Each test runs on the embedded chain and on anvil (where a far-ahead nonce would sit in the
mempool for ever)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from eth_account import Account
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.contracts import ANVIL_DEV_KEYS, Anvil, RewardTree, anvil_binary
from tokenweave.contracts._staking import staking_calls
from tokenweave.coordinator._db import open_database
from tokenweave.coordinator._errors import StatusInterceptor
from tokenweave.coordinator._ledger import RewardLedger
from tokenweave.coordinator._metering import PriceList
from tokenweave.coordinator._reward_chain import (
    MAX_UNMINED_RELAYED,
    ContractRewardChain,
    open_reward_chain,
)
from tokenweave.coordinator._rewards_servicer import MAX_RELAYED, RewardsServicer
from tokenweave.coordinator._settlement import EpochSettler, SentTransaction, SettlementPolicy
from tokenweave.types import ChainInfo
from tokenweave.v1 import rewards_pb2, rewards_pb2_grpc
from tokenweave.workloads import Usage

PRICES = PriceList({"m": 1_000_000})  # 1 TWV per 1,000 tokens
GAS = 200_000


def _tree(leaves: Mapping[str, int]) -> tuple[bytes, Callable[[str], Sequence[bytes]]]:
    tree = RewardTree(leaves)
    return tree.root, tree.proof


@pytest.fixture(scope="module")
def anvil() -> Iterator[Anvil]:
    try:
        anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    with Anvil() as node:
        yield node


@pytest.fixture(params=["embedded", "anvil"])
def chain(request: pytest.FixtureRequest, tmp_path: Path) -> ContractRewardChain:
    if request.param == "embedded":
        return open_reward_chain("embedded", None, tmp_path)
    node: Anvil = request.getfixturevalue("anvil")
    admin, poster = ("0x" + k.hex() for k in ANVIL_DEV_KEYS[:2])
    return open_reward_chain(node.url, admin, tmp_path, poster_key=poster)


@dataclass
class Service:
    stub: rewards_pb2_grpc.RewardsServiceStub
    ledger: RewardLedger
    settler: EpochSettler
    sessions: async_sessionmaker[AsyncSession]
    chain: Any
    servicer: RewardsServicer
    #: host:port of the server.
    address: str


async def serve_rewards(tmp_path: Path, chain: Any) -> AsyncIterator[Service]:
    """RewardsService over gRPC on a port of its own, on `chain`, with a fresh ledger."""
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    ledger = RewardLedger(sessions, _tree, PRICES)
    settler = EpochSettler(ledger, chain, SettlementPolicy(epoch_seconds=0))
    server = aio.server(interceptors=[StatusInterceptor()])
    servicer = RewardsServicer(ledger, settler, chain, 10**17)
    rewards_pb2_grpc.add_RewardsServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Service(
            rewards_pb2_grpc.RewardsServiceStub(channel),
            ledger,
            settler,
            sessions,
            chain,
            servicer,
            f"127.0.0.1:{port}",
        )
    await server.stop(None)
    await engine.dispose()


@pytest.fixture
async def service(tmp_path: Path, chain: ContractRewardChain) -> AsyncIterator[Service]:
    async for served in serve_rewards(tmp_path, chain):
        yield served


async def earn(service: Service, address: str, tokens: int = 5_000) -> None:
    """`address` earned `tokens` model tokens (5 TWV by default), settled on chain."""
    address = address.lower()
    service.chain.fund(address, 10**17)
    async with service.sessions.begin() as session:
        await service.ledger.append(session, f"s-{address}", "j", address, "m", Usage(tokens))
    await service.settler.close_epoch()
    await service.settler.step()


async def _earned(service: Service, tokens: int = 5_000) -> bytes:
    """A fresh operator key that earned `tokens` model tokens, settled on chain."""
    key = bytes(Account.create().key)
    await earn(service, Account.from_key(key).address, tokens)
    return key


def _sign(
    key: bytes,
    chain: ContractRewardChain,
    to: str,
    data: bytes,
    nonce: int,
    gas_price: int | None = None,
) -> bytes:
    tx = {
        "to": to,
        "data": data,
        "value": 0,
        "gas": GAS,
        "gasPrice": chain.gas_price() if gas_price is None else gas_price,
        "nonce": nonce,
        "chainId": chain.info.chain_id,
    }
    return bytes(Account.sign_transaction(tx, key).raw_transaction)


def _claim_data(chain: ContractRewardChain, address: str, amount: int) -> bytes:
    proof = RewardTree({address: amount}).proof(address)
    function = chain.contracts.distributor.functions.claim(address, amount, proof)
    return bytes.fromhex(function._encode_transaction_data()[2:])


async def _relay(service: Service, raw: bytes) -> rewards_pb2.SendTransactionResponse:
    request = rewards_pb2.SendTransactionRequest(raw_transaction=raw)
    return await service.stub.SendTransaction(request, timeout=60)


async def test_far_ahead_nonces_are_refused_at_once_and_rewards_still_answer(
    service: Service,
) -> None:
    key = await _earned(service)
    address = Account.from_key(key).address
    data = _claim_data(service.chain, address, 5 * 10**18)
    to = service.chain.info.distributor
    jams = [_sign(key, service.chain, to, data, 1_000 + i) for i in range(8)]
    started = time.monotonic()

    async def rewards() -> float:
        await service.stub.GetRewards(rewards_pb2.GetRewardsRequest(address=address), timeout=10)
        return time.monotonic() - started

    results = await asyncio.gather(*(_relay(service, raw) for raw in jams), return_exceptions=True)
    answered_in = await rewards()
    assert time.monotonic() - started < 10
    assert answered_in < 10
    for i, result in enumerate(results):
        assert isinstance(result, aio.AioRpcError)
        assert result.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"nonce {1_000 + i} is not the next" in str(result.details())
        assert "expected 0" in str(result.details())
    # The operator's real claim goes through afterwards.
    sent = await _relay(service, _sign(key, service.chain, to, data, 0))
    assert sent.success
    assert service.chain.balance(address) == 5 * 10**18


async def test_a_claim_that_would_revert_is_refused_with_its_error(service: Service) -> None:
    key = await _earned(service)
    address = Account.from_key(key).address
    data = _claim_data(service.chain, address, 5 * 10**18)
    to = service.chain.info.distributor
    assert (await _relay(service, _sign(key, service.chain, to, data, 0))).success
    with pytest.raises(aio.AioRpcError) as info:
        await _relay(service, _sign(key, service.chain, to, data, 1))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Reward__NothingToClaim" in str(info.value.details())
    assert service.chain.nonce(address) == 1  # nothing was sent
    forged = _claim_data(service.chain, address, 50 * 10**18)
    with pytest.raises(aio.AioRpcError) as info:
        await _relay(service, _sign(key, service.chain, to, forged, 1))
    assert "Reward__InvalidProof" in str(info.value.details())


async def test_only_calls_to_the_reward_contracts_are_relayed(service: Service) -> None:
    key = await _earned(service)
    elsewhere = Account.create().address
    token = service.chain.info.token
    for raw, expected in [
        (_sign(key, service.chain, elsewhere, b"", 0), "only calls to the reward contracts"),
        (_sign(key, service.chain, token, b"", 0, gas_price=0), "below the base fee"),
        (b"\x01\x02\x03", "not a signed transaction"),
        (b"", "raw_transaction is empty"),
    ]:
        with pytest.raises(aio.AioRpcError) as info:
            await _relay(service, raw)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert expected in str(info.value.details())


async def _relay_next(service: Service, key: bytes, to: str, data: bytes) -> bool:
    nonce = service.chain.nonce(Account.from_key(key).address)
    return (await _relay(service, _sign(key, service.chain, to, data, nonce))).success


async def test_an_operator_stakes_and_unstakes_through_the_relay(service: Service) -> None:
    """What `tokenweave node stake/unstake` sends."""
    key = await _earned(service)
    address = Account.from_key(key).address
    info = service.chain.info
    claim = _claim_data(service.chain, address, 5 * 10**18)
    assert await _relay_next(service, key, info.distributor, claim)
    for action, amount in (("stake", 3 * 10**18), ("unstake", 10**18)):
        for call in staking_calls(action, info.token, info.distributor, amount):
            assert await _relay_next(service, key, call.to, call.data)
    assert service.chain.stake_of(address) == 2 * 10**18
    [withdraw] = staking_calls("withdraw", info.token, info.distributor)
    with pytest.raises(aio.AioRpcError) as caught:
        await _relay_next(service, key, withdraw.to, withdraw.data)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Staking__StillUnbonding" in str(caught.value.details())


async def test_few_relayed_transactions_wait_to_be_mined(
    service: Service, chain: ContractRewardChain
) -> None:
    """With mining stopped (anvil), the fifth sender is refused at once instead of queueing."""
    if chain.info.endpoint == "embedded":
        pytest.skip("the embedded chain mines every transaction as it is sent")
    keys = [bytes(Account.create().key) for _ in range(MAX_UNMINED_RELAYED + 1)]
    for key in keys:
        chain.fund(Account.from_key(key).address, 10**17)
    approve = chain.contracts.token.functions.approve(chain.info.distributor, 1)
    data = bytes.fromhex(approve._encode_transaction_data()[2:])
    w3 = chain.contracts.chain.w3
    w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        waiting = [
            asyncio.ensure_future(_relay(service, _sign(key, chain, chain.info.token, data, 0)))
            for key in keys[:-1]
        ]
        deadline = time.monotonic() + 10
        while len(w3.eth.get_block("pending")["transactions"]) < len(waiting):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        started = time.monotonic()
        with pytest.raises(aio.AioRpcError) as info:
            await _relay(service, _sign(keys[-1], chain, chain.info.token, data, 0))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - started < 5
        address = Account.from_key(keys[0]).address
        await service.stub.GetRewards(rewards_pb2.GetRewardsRequest(address=address), timeout=5)
    finally:
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    assert all(sent.success for sent in await asyncio.gather(*waiting))
    assert (await _relay(service, _sign(keys[-1], chain, chain.info.token, data, 0))).success


class SlowChain:
    """A chain whose relayed transactions take until `release` is set to be mined."""

    def __init__(self) -> None:
        self.info = ChainInfo(1337, "embedded", "0x" + "11" * 20, "0x" + "22" * 20)
        self.release = threading.Event()

    def send_raw(self, raw: bytes) -> SentTransaction:
        self.release.wait(30)
        return SentTransaction("0x" + "00" * 32, True, 1, 21_000)

    def claimed(self, address: str) -> int:
        return 0

    def balance(self, address: str) -> int:
        return 0


async def test_relayed_transactions_in_flight_are_capped(tmp_path: Path) -> None:
    """Relays beyond the cap are refused at once, and the other calls keep their threads."""
    slow = SlowChain()
    async for served in serve_rewards(tmp_path, slow):
        request = rewards_pb2.SendTransactionRequest(raw_transaction=b"\x01")
        waiting = [
            asyncio.ensure_future(served.stub.SendTransaction(request, timeout=30))
            for _ in range(MAX_RELAYED)
        ]
        deadline = time.monotonic() + 10
        while served.servicer.relaying < MAX_RELAYED:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        with pytest.raises(aio.AioRpcError) as info:
            await served.stub.SendTransaction(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        address = Account.create().address
        await served.stub.GetRewards(rewards_pb2.GetRewardsRequest(address=address), timeout=5)
        slow.release.set()
        assert all(r.success for r in await asyncio.gather(*waiting))
        assert (await served.stub.SendTransaction(request, timeout=5)).success
