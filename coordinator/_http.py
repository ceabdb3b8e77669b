"""HttpServer: the coordinator's HTTP port (the OpenAI API), served by uvicorn on its own loop.

uvicorn runs as a task of the coordinator's event loop on a socket bound here (so port 0 works
and the bound address is known at once), with the coordinator's TLS certificate when it has one:
plaintext is refused off loopback, as on the gRPC port. The coordinator's signal handling stays
in charge: uvicorn's own is switched off, and `stop` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from fastapi import APIRouter, FastAPI

from tokenweave._tls import require_tls_off_loopback
from tokenweave.coordinator._limits import ServiceLimits
from tokenweave.coordinator._metrics import MetricsRoute
from tokenweave.coordinator._openai import OpenAiApi
from tokenweave.errors import InvalidArgumentError

logger = logging.getLogger(__name__)


def coordinator_app(api: OpenAiApi, kserve: APIRouter, metrics: MetricsRoute) -> FastAPI:
    """The HTTP port's app: the OpenAI API, KServe's v2 REST protocol, and /metrics."""
    app = api.app()
    app.include_router(kserve)
    metrics.install(app)
    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the coordinator handles SIGINT/SIGTERM and calls `stop`


def _bind(listen: str) -> socket.socket:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgumentError(f"--http-listen {listen!r} must read HOST:PORT")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise InvalidArgumentError(f"could not listen on {listen} for HTTP: {exc}") from None
    sock.listen(128)
    return sock


class HttpServer:
    def __init__(
        self,
        app: FastAPI,
        listen: str,
        limits: ServiceLimits,
        tls_cert: Path | None = None,
        tls_key: Path | None = None,
    ) -> None:
        require_tls_off_loopback(listen, tls_cert is not None)
        self._socket = _bind(listen)
        host, port = self._socket.getsockname()[:2]
        self.address = f"{'[' + host + ']' if ':' in host else host}:{port}"
        self.scheme = "https" if tls_cert else "http"
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(tls_cert) if tls_cert else None,
            ssl_keyfile=str(tls_key) if tls_key else None,
            limit_concurrency=limits.max_connections,
            timeout_keep_alive=int(limits.handshake_timeout_s),
            h11_max_incomplete_event_size=limits.max_metadata_bytes,
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        logger.info("OpenAI API on %s/v1", self.url)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._socket.close()
