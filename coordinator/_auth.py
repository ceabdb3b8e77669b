"""Who is calling: developers' API keys, what each RPC requires, and rate limits.

A developer calls with an API key in the `authorization` metadata (`Bearer tw_<id>_<secret>`).
Only a sha256 of the secret is stored (`ApiKeyRow`); the key is shown once, when it is made.
Each key belongs to a client: the jobs and datasets it submits are that client's, and only it
and an admin may read, watch or cancel them. An admin key manages keys, closes epochs and sees
every job. The first start of a coordinator writes an admin key to `<data_dir>/admin.key`
(mode 0600), as Jupyter writes its token.

Every RPC has an access level (`METHOD_ACCESS`; an RPC not listed is admin-only):

    PUBLIC  health, reflection, rewards and claims (operators' addresses are public anyway),
            block providers
    NODE    the node service: nodes sign their registration and hold a session token instead
    CLIENT  any valid key
    ADMIN   an admin key

`AuthInterceptor` checks the key, applies the caller's rate limit to every call (a token bucket
per client, or per host for calls without a key, nodes' included), and makes the caller known
to the servicers through `current_principal()` (a context variable: grpc.aio serves each call
in a task of its own).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import inspect
import logging
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import grpc
from grpc import aio
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import ApiKeyRow, utcnow
from tokenweave.coordinator._errors import checked_identifier
from tokenweave.errors import (
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    clip,
)

logger = logging.getLogger(__name__)

KEY_PREFIX = "tw"
_KEY = re.compile(r"^tw_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_CLIENT_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
ADMIN_KEY_FILE = "admin.key"


class Access(StrEnum):
    PUBLIC = "public"
    NODE = "node"
    CLIENT = "client"
    ADMIN = "admin"


_SERVICES = {
    "grpc.health.v1.Health": {"": Access.PUBLIC},
    "grpc.reflection.v1alpha.ServerReflection": {"": Access.PUBLIC},
    "tokenweave.v1.NodeService": {"": Access.NODE},
    "tokenweave.v1.JobService": {"": Access.CLIENT},
    # Nodes ask where blocks are too; providers are public, as in IPFS.
    "tokenweave.v1.DataService": {"": Access.CLIENT, "GetProviders": Access.PUBLIC},
    "tokenweave.v1.RewardsService": {
        "": Access.PUBLIC,
        "CloseEpoch": Access.ADMIN,
    },
    # Nodes list the registered models before they register.
    "tokenweave.v1.ModelService": {"": Access.CLIENT, "ListModels": Access.PUBLIC},
    # The Open Inference Protocol: health and metadata are public, as in Triton.
    "inference.GRPCInferenceService": {"": Access.PUBLIC, "ModelInfer": Access.CLIENT},
    "tokenweave.v1.AuthService": {
        "": Access.ADMIN,
        "WhoAmI": Access.CLIENT,
    },
}


def method_access(method: str) -> Access:
    """The access an RPC (`/package.Service/Method`) requires; admin for anything unknown."""
    service, _, name = method.lstrip("/").rpartition("/")
    levels = _SERVICES.get(service)
    if levels is None:
        return Access.ADMIN
    return levels.get(name, levels[""])


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of an RPC: a client (by its API key) or, for NODE and PUBLIC calls without a
    key, nobody in particular."""

    client_id: str
    admin: bool = False
    key_id: str = ""

    def may_see(self, owner: str) -> bool:
        return self.admin or owner == self.client_id


ANONYMOUS = Principal("")

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar(
    "principal", default=ANONYMOUS
)


def current_principal() -> Principal:
    """The caller of the RPC being served (ANONYMOUS outside one, or without a key)."""
    return _principal.get()


def act_as(principal: Principal) -> None:
    """Make `principal` the caller for the rest of this task (the HTTP API, once it has
    admitted a request, calls the servicers as that client)."""
    _principal.set(principal)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    client_id: str
    admin: bool
    label: str
    created_at: float
    revoked: bool


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.match(client_id):
        raise InvalidArgumentError(
            f"client name {clip(client_id, 80)} must be 1-64 characters of a-z, 0-9, '.', '_' "
            "and '-', starting with a letter or digit"
        )
    return client_id


class ApiKeys:
    """The API keys in the database, with verified keys cached in memory."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._db = sessions
        #: key_id → (secret hash, principal) of keys that are not revoked.
        self._cache: dict[str, tuple[str, Principal]] = {}

    async def create(self, client_id: str, admin: bool = False, label: str = "") -> str:
        """A new key for `client_id`; returns it whole (it is not stored, only its hash)."""
        check_client_id(client_id)
        if len(label) > 120:
            raise InvalidArgumentError("a key's label is at most 120 characters")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        async with self._db.begin() as session:
            session.add(
                ApiKeyRow(
                    key_id=key_id,
                    client_id=client_id,
                    secret_sha256=_hash(secret),
                    admin=admin,
                    label=label,
                    created_at=utcnow(),
                )
            )
        logger.info("API key %s made for client %s%s", key_id, client_id, " (admin)" * admin)
        return f"{KEY_PREFIX}_{key_id}_{secret}"

    async def verify(self, key: str) -> Principal:
        """The key's principal; UNAUTHENTICATED for a malformed, unknown or revoked key."""
        match = _KEY.match(key)
        if match is None:
            raise UnauthenticatedError("malformed API key: expected tw_<12 hex digits>_<secret>")
        key_id, secret = match.groups()
        cached = self._cache.get(key_id)
        if cached is None:
            async with self._db() as session:
                row = await session.get(ApiKeyRow, key_id)
            if row is None or row.revoked_at is not None:
                raise UnauthenticatedError(f"API key {key_id} is unknown or revoked")
            cached = (row.secret_sha256, Principal(row.client_id, row.admin, key_id))
            self._cache[key_id] = cached
        if not hmac.compare_digest(cached[0], _hash(secret)):
            raise UnauthenticatedError(f"API key {key_id}: wrong secret")
        return cached[1]

    async def revoke(self, key_id: str) -> KeyInfo:
        checked_identifier(key_id, "key_id")
        async with self._db.begin() as session:
            row = await session.get(ApiKeyRow, key_id)
            if row is None:
                raise NotFoundError(f"no API key {clip(key_id, 40)}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            self._cache.pop(key_id, None)
            return _info(row)

    async def list(self, client_id: str = "") -> list[KeyInfo]:
        checked_identifier(client_id, "client_id")
        async with self._db() as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.created_at)
            if client_id:
                query = query.where(ApiKeyRow.client_id == client_id)
            return [_info(r) for r in await session.scalars(query)]

    async def admin_key_file(self, data_dir: Path) -> Path:
        """Make sure `<data_dir>/admin.key` holds a valid admin key (a new one if it is missing
        or no longer valid, e.g. a fresh database); returns its path."""
        path = data_dir / ADMIN_KEY_FILE
        if path.exists():
            try:
                if (await self.verify(path.read_text().strip())).admin:
                    return path
            except UnauthenticatedError:
                pass
        key = await self.create("admin", admin=True, label=f"written to {path}")
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
        tmp.replace(path)
        logger.info("admin API key written to %s", path)
        return path


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        row.key_id,
        row.client_id,
        row.admin,
        row.label,
        row.created_at.timestamp(),
        row.revoked_at is not None,
    )


class RateLimiter:
    """A token bucket per caller: `rate` requests a second, bursts of `burst`. The buckets of
    the least recently seen callers are forgotten beyond `max_callers` (a forgotten caller
    starts with a full bucket, which is what a new one gets anyway)."""

    def __init__(self, rate: float, burst: float, max_callers: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, caller: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        tokens, since = self._buckets.pop(caller, (self.burst, now))
        tokens = min(self.burst, tokens + (now - since) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[caller] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return allowed


Context = aio.ServicerContext[Any, Any]


def _bearer(metadata: Sequence[tuple[str, str | bytes]] | None) -> str | None:
    for name, value in metadata or ():
        if name == "authorization":
            text = value.decode(errors="replace") if isinstance(value, bytes) else value
            scheme, _, token = text.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else text.strip()
    return None


def _peer_host(context: Context) -> str:
    """The caller's address without its port: one bucket for all of a host's connections."""
    peer = context.peer() or ""
    return peer.rsplit(":", 1)[0]


class AuthInterceptor(aio.ServerInterceptor):
    """Checks every call's key against its RPC's access level and rate limit (see the module
    docstring). List it first, so that it wraps every other interceptor."""

    def __init__(self, keys: ApiKeys, limiter: RateLimiter) -> None:
        self._keys = keys
        self._limiter = limiter

    async def _admit(self, method: str, key: str | None, context: Context) -> Principal:
        try:
            return await self.admit(method, key, _peer_host(context))
        except (UnauthenticatedError, PermissionDeniedError, ResourceExhaustedError) as exc:
            await context.abort(grpc.StatusCode[exc.status], exc.message)
            raise  # abort raises; this line is for type checkers

    async def admit(self, method: str, key: str | None, host: str) -> Principal:
        """The caller of `method` with API key `key` (None: none) from `host`, once its key,
        access level and rate limit allow the call (the HTTP API asks for its routes too)."""
        access = method_access(method)
        principal = ANONYMOUS
        if key is not None:
            principal = await self._keys.verify(key)
        elif access in (Access.CLIENT, Access.ADMIN):
            raise UnauthenticatedError(
                f"{method} needs an API key: pass --api-key or set TOKENWEAVE_API_KEY (the "
                f"coordinator's admin key is in its data dir, {ADMIN_KEY_FILE})"
            )
        if access is Access.ADMIN and not principal.admin:
            raise PermissionDeniedError(f"{method} needs an admin API key")
        caller = principal.client_id or f"peer {host}"
        if not self._limiter.allow(caller):  # nodes too: a flood of Registers costs CPU
            raise ResourceExhaustedError(
                f"rate limit: {caller} may make {self._limiter.rate:g} calls a second "
                f"(bursts of {self._limiter.burst:g}); slow down"
            )
        return principal

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        key = _bearer(handler_call_details.invocation_metadata)
        admit = self._admit
        h: Any = handler

        if handler.unary_unary is not None or handler.stream_unary is not None:
            kind = "unary_unary" if handler.unary_unary is not None else "stream_unary"
            behaviour = getattr(handler, kind)

            async def unary(request: Any, context: Context) -> Any:
                _principal.set(await admit(method, key, context))
                return await behaviour(request, context)

            return h._replace(**{kind: unary})  # type: ignore[no-any-return]

        kind = "unary_stream" if handler.unary_stream is not None else "stream_stream"
        behaviour = getattr(handler, kind)

        async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
            _principal.set(await admit(method, key, context))
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:
                await result

        return h._replace(**{kind: stream})  # type: ignore[no-any-return]
