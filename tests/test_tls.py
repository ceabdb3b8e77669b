"""TLS with a local CA, on real grpc.aio servers over loopback: plaintext is refused where it
should be, a server of another CA is not trusted, and mutual TLS turns away callers without a
certificate."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tokenweave._tls import (
    LocalCA,
    channel_credentials,
    is_loopback,
    require_tls_off_loopback,
    server_credentials,
)
from tokenweave.errors import InvalidArgumentError


async def _serve(credentials: grpc.ServerCredentials) -> tuple[aio.Server, int]:
    server = aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


async def _check(port: int, credentials: grpc.ChannelCredentials | None) -> str:
    target = f"localhost:{port}"
    channel = (
        aio.insecure_channel(target)
        if credentials is None
        else aio.secure_channel(target, credentials)
    )
    async with channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except aio.AioRpcError as exc:
            return exc.code().name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[LocalCA, int]]:
    ca = LocalCA(tmp_path / "ca")
    files = ca.issue("coordinator")
    server, port = await _serve(server_credentials(files.cert, files.key))
    yield ca, port
    await server.stop(None)


async def test_a_client_that_trusts_the_local_ca_connects(
    tls_server: tuple[LocalCA, int],
) -> None:
    ca, port = tls_server
    assert await _check(port, channel_credentials(ca.cert_path)) == "SERVING"
    assert await _check(port, None) == "UNAVAILABLE", "plaintext to a TLS port fails"


async def test_a_server_of_another_ca_is_not_trusted(
    tls_server: tuple[LocalCA, int], tmp_path: Path
) -> None:
    _, port = tls_server
    stranger = LocalCA(tmp_path / "other")
    assert await _check(port, channel_credentials(stranger.cert_path)) == "UNAVAILABLE"


async def test_mutual_tls_turns_away_callers_without_a_certificate(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path / "ca")
    files = ca.issue("coordinator")
    server, port = await _serve(server_credentials(files.cert, files.key, ca.cert_path))
    try:
        node = ca.issue("node0")
        assert await _check(port, channel_credentials(ca.cert_path, node.cert, node.key)) == (
            "SERVING"
        )
        assert await _check(port, channel_credentials(ca.cert_path)) == "UNAVAILABLE"
        outsider = LocalCA(tmp_path / "outsider").issue("mallory")
        creds = channel_credentials(ca.cert_path, outsider.cert, outsider.key)
        assert await _check(port, creds) == "UNAVAILABLE"
    finally:
        await server.stop(None)


def test_the_ca_is_made_once_and_its_keys_are_private(tmp_path: Path) -> None:
    ca = LocalCA(tmp_path)
    pem = ca.cert_path.read_bytes()
    assert LocalCA(tmp_path).cert_path.read_bytes() == pem, "reused, not remade"
    files = ca.issue("coordinator")
    for key in (tmp_path / "ca.key", files.key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_plaintext_is_allowed_on_loopback_only() -> None:
    for listen in ("127.0.0.1:50051", "localhost:1", "[::1]:5", "127.9.9.9:0"):
        require_tls_off_loopback(listen, tls=False)
    for listen in ("0.0.0.0:50051", "10.0.0.1:1", "example.com:443", "[::]:1"):
        with pytest.raises(InvalidArgumentError, match="plaintext is allowed on loopback only"):
            require_tls_off_loopback(listen, tls=False)
        require_tls_off_loopback(listen, tls=True)
    assert not is_loopback("")


def test_a_missing_certificate_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match=r"cannot read the TLS key .*nope\.key: No such"):
        server_credentials(tmp_path / "nope.pem", tmp_path / "nope.key")
