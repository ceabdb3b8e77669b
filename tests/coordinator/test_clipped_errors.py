"""Status messages are clipped in the one interceptor: an error echoing a huge input keeps its
own status code instead of turning into RESOURCE_EXHAUSTED when the trailer passes gRPC's limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from tokenweave.coordinator._data_servicer import DataServicer
from tokenweave.coordinator._datasets import DatasetIndex
from tokenweave.coordinator._db import open_database
from tokenweave.coordinator._errors import MAX_STATUS_MESSAGE_BYTES, StatusInterceptor, clip_status
from tokenweave.coordinator._lanes import Lanes
from tokenweave.errors import InvalidArgumentError, NotFoundError
from tokenweave.v1 import data_pb2, data_pb2_grpc

HUGE = 200_000


async def echo_invalid(request: bytes, context: Any) -> bytes:
    raise InvalidArgumentError(f"bad input {request.decode()!r}")


async def echo_not_found(request: bytes, context: Any) -> bytes:
    raise NotFoundError("no such thing: " + "é" * HUGE)


async def crash(request: bytes, context: Any) -> bytes:
    raise RuntimeError("x" * HUGE)


async def stream_invalid(request: bytes, context: Any) -> AsyncIterator[bytes]:
    yield b"first"
    raise InvalidArgumentError("y" * HUGE)


@pytest.fixture
async def channel(tmp_path: Path) -> AsyncIterator[aio.Channel]:
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    server = aio.server(interceptors=[StatusInterceptor()])
    data_pb2_grpc.add_DataServiceServicer_to_server(
        DataServicer(Lanes(), DatasetIndex(sessions), replicas=1), server
    )
    handlers = {
        "Invalid": grpc.unary_unary_rpc_method_handler(echo_invalid),
        "NotFound": grpc.unary_unary_rpc_method_handler(echo_not_found),
        "Crash": grpc.unary_unary_rpc_method_handler(crash),
        "Stream": grpc.unary_stream_rpc_method_handler(stream_invalid),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("t.Echo", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)
    await engine.dispose()


def assert_clipped(error: aio.AioRpcError, code: grpc.StatusCode) -> None:
    assert error.code() == code, error.details()
    details = error.details() or ""
    assert len(details.encode()) <= MAX_STATUS_MESSAGE_BYTES
    assert details.endswith("more bytes cut)")


@pytest.mark.parametrize(
    ("method", "code"),
    [
        ("Invalid", grpc.StatusCode.INVALID_ARGUMENT),
        ("NotFound", grpc.StatusCode.NOT_FOUND),
        ("Crash", grpc.StatusCode.INTERNAL),
    ],
)
async def test_a_huge_message_keeps_its_status(
    channel: aio.Channel, method: str, code: grpc.StatusCode
) -> None:
    call = channel.unary_unary(f"/t.Echo/{method}")
    with pytest.raises(aio.AioRpcError) as caught:
        await call(b"z" * HUGE, timeout=30)
    assert_clipped(caught.value, code)


async def test_a_stream_ending_in_a_huge_error_keeps_its_status(channel: aio.Channel) -> None:
    call = channel.unary_stream("/t.Echo/Stream")
    received: list[bytes] = []

    async def read_all() -> None:
        async for item in call(b"", timeout=30):
            received.append(item)

    with pytest.raises(aio.AioRpcError) as caught:
        await read_all()
    assert received == [b"first"]
    assert_clipped(caught.value, grpc.StatusCode.INVALID_ARGUMENT)


async def test_an_absurd_cid_is_an_invalid_argument(channel: aio.Channel) -> None:
    stub = data_pb2_grpc.DataServiceStub(channel)
    for cid in ("b" + "a" * HUGE, "Qm" + "é" * HUGE):
        with pytest.raises(aio.AioRpcError) as caught:
            await stub.GetProviders(data_pb2.GetProvidersRequest(cid=cid), timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len((caught.value.details() or "").encode()) <= MAX_STATUS_MESSAGE_BYTES


def test_clip_status_keeps_valid_utf8_within_the_limit() -> None:
    assert clip_status("short") == "short"
    assert clip_status("x" * MAX_STATUS_MESSAGE_BYTES) == "x" * MAX_STATUS_MESSAGE_BYTES
    for text in ("x" * 5000, "é" * 5000, "😀" * 5000, "\udcff" * 5000):
        clipped = clip_status(text)
        size = len(clipped.encode())
        assert MAX_STATUS_MESSAGE_BYTES - 4 <= size <= MAX_STATUS_MESSAGE_BYTES
        cut = int(clipped.rsplit("(", 1)[1].split()[0].replace(",", ""))
        kept = clipped.rsplit("… (", 1)[0]
        assert cut + len(kept.encode()) == len(text.encode("utf-8", "replace"))
