"""API keys and the auth interceptor, on a real grpc.aio server and a real SQLite database."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._auth import (
    Access,
    ApiKeys,
    AuthInterceptor,
    RateLimiter,
    current_principal,
    method_access,
)
from tokenweave.coordinator._db import open_database
from tokenweave.coordinator._errors import checked_identifier
from tokenweave.errors import InvalidArgumentError

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Sessions]:
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    yield sessions
    await engine.dispose()


def _echo(request: bytes, context: object) -> bytes:
    p = current_principal()
    return f"{p.client_id}|{p.admin}".encode()


async def _echo_async(request: bytes, context: object) -> bytes:
    return _echo(request, context)


async def _echo_stream(request: bytes, context: object) -> AsyncIterator[bytes]:
    for _ in range(2):
        yield _echo(request, context)


def _handlers() -> list[grpc.GenericRpcHandler]:
    def unary() -> grpc.RpcMethodHandler[bytes, bytes]:
        return grpc.unary_unary_rpc_method_handler(_echo_async)

    return [
        grpc.method_handlers_generic_handler(
            "tokenweave.v1.JobService",
            {
                "ListJobs": unary(),
                "WatchJob": grpc.unary_stream_rpc_method_handler(_echo_stream),
            },
        ),
        grpc.method_handlers_generic_handler("tokenweave.v1.AuthService", {"CreateKey": unary()}),
        grpc.method_handlers_generic_handler(
            "tokenweave.v1.RewardsService", {"GetRewards": unary(), "CloseEpoch": unary()}
        ),
        grpc.method_handlers_generic_handler("tokenweave.v1.Unlisted", {"Do": unary()}),
        grpc.method_handlers_generic_handler("tokenweave.v1.NodeService", {"Register": unary()}),
    ]


@pytest.fixture
async def server(db: Sessions) -> AsyncIterator[tuple[str, ApiKeys]]:
    keys = ApiKeys(db)
    srv = aio.server(interceptors=[AuthInterceptor(keys, RateLimiter(rate=1000, burst=1000))])
    srv.add_generic_rpc_handlers(_handlers())
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    yield f"127.0.0.1:{port}", keys
    await srv.stop(None)


async def _call(address: str, method: str, key: str | None = None) -> tuple[str, str]:
    """(status name, body or details) of one call."""
    metadata = (("authorization", f"Bearer {key}"),) if key else None
    async with aio.insecure_channel(address) as channel:
        try:
            if method.endswith("WatchJob"):
                call = channel.unary_stream(method)(b"", metadata=metadata)
                body = b"".join([m async for m in call])
            else:
                body = await channel.unary_unary(method)(b"", metadata=metadata)
        except aio.AioRpcError as exc:
            return exc.code().name, exc.details() or ""
    return "OK", body.decode()


LIST = "/tokenweave.v1.JobService/ListJobs"
WATCH = "/tokenweave.v1.JobService/WatchJob"


def test_every_rpc_has_an_access_level_and_unknown_ones_are_admin_only() -> None:
    assert method_access("/grpc.health.v1.Health/Check") is Access.PUBLIC
    assert method_access("/tokenweave.v1.NodeService/Lease") is Access.NODE
    assert method_access(LIST) is Access.CLIENT
    assert method_access("/tokenweave.v1.RewardsService/CloseEpoch") is Access.ADMIN
    assert method_access("/tokenweave.v1.RewardsService/GetRewards") is Access.PUBLIC
    assert method_access("/tokenweave.v1.Unlisted/Do") is Access.ADMIN
    assert method_access("garbage") is Access.ADMIN


async def test_calls_are_checked_against_their_keys(server: tuple[str, ApiKeys]) -> None:
    address, keys = server
    alice = await keys.create("alice")
    root = await keys.create("root", admin=True)
    status, details = await _call(address, LIST)
    assert status == "UNAUTHENTICATED"
    assert "TOKENWEAVE_API_KEY" in details
    assert await _call(address, LIST, alice) == ("OK", "alice|False")
    assert await _call(address, WATCH, alice) == ("OK", "alice|False" * 2)
    assert await _call(address, "/tokenweave.v1.RewardsService/GetRewards") == ("OK", "|False")
    for method in (
        "/tokenweave.v1.RewardsService/CloseEpoch",
        "/tokenweave.v1.AuthService/CreateKey",
        "/tokenweave.v1.Unlisted/Do",
    ):
        assert (await _call(address, method, alice))[0] == "PERMISSION_DENIED"
        assert await _call(address, method, root) == ("OK", "root|True")


@pytest.mark.parametrize(
    "bad",
    ["nonsense", "tw_0123456789ab_" + "x" * 43, "tw_zz_" + "x" * 43, "x" * 4_000],
)
async def test_bad_keys_are_unauthenticated(server: tuple[str, ApiKeys], bad: str) -> None:
    address, _keys = server
    status, details = await _call(address, LIST, bad)
    assert status == "UNAUTHENTICATED"
    assert len(details) < 200


async def test_a_wrong_secret_and_a_revoked_key_are_refused(server: tuple[str, ApiKeys]) -> None:
    address, keys = server
    key = await keys.create("bob")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert await _call(address, LIST, forged) == (
        "UNAUTHENTICATED",
        f"API key {key[3:15]}: wrong secret",
    )
    assert (await _call(address, LIST, key))[0] == "OK"
    await keys.revoke(key[3:15])
    assert (await _call(address, LIST, key))[0] == "UNAUTHENTICATED"


async def test_only_a_hash_of_the_secret_is_stored(db: Sessions, tmp_path: Path) -> None:
    key = await ApiKeys(db).create("carol", label="laptop")
    secret = key.rsplit("_", 1)[-1][-20:]
    assert secret.encode() not in (tmp_path / "c.db").read_bytes()
    (info,) = await ApiKeys(db).list("carol")
    assert (info.client_id, info.label, info.revoked) == ("carol", "laptop", False)


async def test_client_names_are_checked(db: Sessions) -> None:
    from tokenweave.errors import InvalidArgumentError

    for name in ("", "UPPER", "a" * 65, "-dash", "x y", "é"):
        with pytest.raises(InvalidArgumentError):
            await ApiKeys(db).create(name)


async def test_the_admin_key_file_is_private_and_survives_a_restart(
    db: Sessions, tmp_path: Path
) -> None:
    keys = ApiKeys(db)
    path = await keys.admin_key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = path.read_text().strip()
    assert (await keys.verify(key)).admin
    assert await ApiKeys(db).admin_key_file(tmp_path) == path
    assert path.read_text().strip() == key, "a valid key is kept"


async def test_a_caller_over_its_rate_is_told_to_slow_down(db: Sessions) -> None:
    keys = ApiKeys(db)
    srv = aio.server(interceptors=[AuthInterceptor(keys, RateLimiter(rate=0.001, burst=3))])
    srv.add_generic_rpc_handlers(_handlers())
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    try:
        address = f"127.0.0.1:{port}"
        alice, bob = await keys.create("alice"), await keys.create("bob")
        statuses = [(await _call(address, LIST, alice))[0] for _ in range(5)]
        assert statuses == ["OK"] * 3 + ["RESOURCE_EXHAUSTED"] * 2
        assert (await _call(address, LIST, bob))[0] == "OK", "another client has its own bucket"
        register = "/tokenweave.v1.NodeService/Register"
        statuses = [(await _call(address, register))[0] for _ in range(4)]
        assert statuses == ["OK"] * 3 + ["RESOURCE_EXHAUSTED"], "a host flooding Register too"
    finally:
        await srv.stop(None)


def test_the_rate_limiter_refills_and_forgets_the_oldest_callers() -> None:
    limiter = RateLimiter(rate=1.0, burst=2, max_callers=2)
    assert [limiter.allow("a", now=0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("a", now=1.0)
    limiter.allow("b", now=1.0)
    limiter.allow("c", now=1.0)
    assert len(limiter._buckets) == 2


@pytest.mark.parametrize("value", ["a\x00b", "\n", "é", "x" * 129])
def test_identifiers_that_name_nothing_are_refused_before_any_query(value: str) -> None:
    with pytest.raises(InvalidArgumentError, match="is not an identifier"):
        checked_identifier(value, "job_id")


def test_identifiers_pass_through() -> None:
    assert checked_identifier("3f2a-job_01", "job_id") == "3f2a-job_01"
