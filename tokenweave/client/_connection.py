"""Connection: a channel to a coordinator with its service stubs, and errors translated.

The SDK's `Client` is built on it, one group of calls at a time (datasets in _data.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

import grpc

from tokenweave._address import parse_address
from tokenweave.client._channel import default_api_key, default_tls_ca, open_channel
from tokenweave.client._channel import translate as _translate
from tokenweave.v1 import (
    auth_pb2_grpc,
    data_pb2_grpc,
    jobs_pb2_grpc,
    models_pb2_grpc,
    rewards_pb2_grpc,
)

DEFAULT_COORDINATOR = "127.0.0.1:50051"
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

T = TypeVar("T")


def default_address() -> str:
    return os.environ.get("TOKENWEAVE_COORDINATOR") or DEFAULT_COORDINATOR


class Connection:
    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 60.0,
        api_key: str | None = None,
        tls_ca: Path | str | None = None,
    ) -> None:
        """`api_key` (default TOKENWEAVE_API_KEY) identifies you to the coordinator; `tls_ca`
        (default TOKENWEAVE_TLS_CA) is the CA that signed its certificate (without one the
        connection is plaintext, which coordinators serve on loopback only)."""
        self.address = parse_address(address or default_address(), "coordinator address")
        self.timeout = timeout
        ca = Path(tls_ca) if tls_ca is not None else default_tls_ca()
        self._channel = calls = open_channel(
            self.address,
            api_key=api_key or default_api_key(),
            tls_ca=ca,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ],
        )
        self._stub = jobs_pb2_grpc.JobServiceStub(calls)
        self._rewards = rewards_pb2_grpc.RewardsServiceStub(calls)
        self._data = data_pb2_grpc.DataServiceStub(calls)
        self._auth = auth_pb2_grpc.AuthServiceStub(calls)
        self._models = models_pb2_grpc.ModelServiceStub(calls)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except grpc.RpcError as exc:
            raise _translate(exc) from exc
