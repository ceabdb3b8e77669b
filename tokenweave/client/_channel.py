"""The SDK's channel to a coordinator: TLS when given a CA, and the API key on every call.

api_key  --api-key, else TOKENWEAVE_API_KEY: sent as `authorization: Bearer <key>`
tls_ca   --tls-ca, else TOKENWEAVE_TLS_CA: the CA that signed the coordinator's
         certificate; without one the channel is plaintext (coordinators serve plaintext on
         loopback only)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from tokenweave._tls import channel_credentials
from tokenweave.errors import TokenweaveError, error_for_status

API_KEY_ENV = "TOKENWEAVE_API_KEY"
TLS_CA_ENV = "TOKENWEAVE_TLS_CA"


def default_api_key() -> str | None:
    return os.environ.get(API_KEY_ENV) or None


def default_tls_ca() -> Path | None:
    value = os.environ.get(TLS_CA_ENV)
    return Path(value) if value else None


class _Details(grpc.ClientCallDetails):
    def __init__(
        self, base: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class _Authorize(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the API key to every call's metadata."""

    def __init__(self, api_key: str) -> None:
        self._header: tuple[str, str | bytes] = ("authorization", f"Bearer {api_key}")

    def _details(self, details: grpc.ClientCallDetails) -> _Details:
        return _Details(details, (*(details.metadata or ()), self._header))

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, requests: Any
    ) -> Any:
        return continuation(self._details(details), requests)


def open_channel(
    address: str,
    *,
    api_key: str | None,
    tls_ca: Path | None,
    options: list[tuple[str, Any]] | None = None,
) -> grpc.Channel:
    """A channel to `address` (closing it closes the connection)."""
    if tls_ca is not None:
        raw = grpc.secure_channel(address, channel_credentials(tls_ca), options=options)
    else:
        raw = grpc.insecure_channel(address, options=options)
    return grpc.intercept_channel(raw, _Authorize(api_key)) if api_key else raw


def translate(exc: grpc.RpcError) -> TokenweaveError:
    """The `tokenweave.errors` class of a failed call, with the coordinator's message."""
    code = exc.code()
    details = exc.details() or code.name
    return error_for_status(code.name, details)
