"""NodeRegistry: challenge-response registration, session tokens and liveness.

A node proves it holds the key of its Ethereum address by signing a one-time challenge
(EIP-191 personal_sign). Liveness is by expiry: a node not heard from within `expiry` is offline.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._convert import hardware_to_json, node_from_row
from tokenweave.coordinator._db import NodeRow, utcnow
from tokenweave.coordinator._standing import Standing
from tokenweave.coordinator._views import NodeRegistration
from tokenweave.errors import (
    InvalidArgumentError,
    UnauthenticatedError,
    clip,
)
from tokenweave.types import ModelOffer, NodeInfo

CHALLENGE_TTL_SECONDS = 60.0
#: Challenges open at once per address; the oldest gives way.
MAX_OPEN_CHALLENGES = 8


def challenge_message(coordinator_id: str, address: str, nonce: bytes) -> str:
    return (
        "tokenweave node registration\n"
        f"coordinator: {coordinator_id}\n"
        f"address: {address}\n"
        f"nonce: {nonce.hex()}"
    )


def normalize_address(address: str) -> str:
    body = address[2:] if address.startswith(("0x", "0X")) else ""
    if len(body) != 40 or any(c not in "0123456789abcdefABCDEF" for c in body):
        raise InvalidArgumentError(
            f"{clip(address)} is not an Ethereum address (0x + 40 hex digits)"
        )
    return "0x" + body.lower()


@dataclass(slots=True)
class _Session:
    token: str
    last_seen: float
    max_inflight: int
    models: tuple[ModelOffer, ...]
    workloads: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """What a registered node offers for this session."""

    max_inflight: int
    models: tuple[ModelOffer, ...]
    workloads: frozenset[str]


class NodeRegistry:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        coordinator_id: str,
        expiry_seconds: float,
        standing: Standing,
    ) -> None:
        self._db = sessions
        self._coordinator_id = coordinator_id
        self._expiry = expiry_seconds
        self._standing = standing
        #: address → {nonce: expiry}
        self._challenges: dict[str, dict[bytes, float]] = {}
        self._live: dict[str, _Session] = {}

    def challenge(self, address: str) -> tuple[str, bytes]:
        """A one-time nonce for `address` to sign. Several may be open at once (anyone may ask
        for one, so a new one must not void the node's own)."""
        address = normalize_address(address)
        now = time.monotonic()
        self._challenges = {
            a: live
            for a, c in self._challenges.items()
            if (live := {n: t for n, t in c.items() if t > now})
        }
        open_ = self._challenges.setdefault(address, {})
        while len(open_) >= MAX_OPEN_CHALLENGES:
            del open_[min(open_, key=open_.__getitem__)]
        nonce = secrets.token_bytes(32)
        open_[nonce] = now + CHALLENGE_TTL_SECONDS
        return challenge_message(self._coordinator_id, address, nonce), nonce

    def _verify(self, reg: NodeRegistration) -> str:
        address = normalize_address(reg.address)
        expires = self._challenges.get(address, {}).pop(bytes(reg.nonce), 0.0)
        if expires < time.monotonic():
            raise UnauthenticatedError(
                f"no open challenge for {address} with this nonce; call GetChallenge first "
                f"(challenges last {CHALLENGE_TTL_SECONDS:.0f} s and are good for one attempt)"
            )
        message = encode_defunct(
            text=challenge_message(self._coordinator_id, address, bytes(reg.nonce))
        )
        try:
            signer = str(Account.recover_message(message, signature=reg.signature)).lower()
        except Exception as exc:  # eth_account raises several types for malformed signatures
            raise UnauthenticatedError(f"malformed signature for {address}: {exc}") from exc
        if signer != address:
            raise UnauthenticatedError(
                f"signature check failed: the challenge was signed by {signer}, not {address}"
            )
        return address

    async def register(self, reg: NodeRegistration) -> tuple[str, str]:
        """Verify the signature, upsert the node, and open a session; returns (node_id, token)."""
        address = self._verify(reg)
        if not 1 <= reg.max_inflight_shards <= 64:
            raise InvalidArgumentError("max_inflight_shards must be between 1 and 64")
        for m in reg.models:
            if not (math.isfinite(m.tokens_per_second) and 0 < m.tokens_per_second < 1e10):
                raise InvalidArgumentError(
                    f"model {m.name[:80]!r}: tokens_per_second {m.tokens_per_second} must be a "
                    "finite positive measurement"
                )
        if len(reg.version) > 40 or len(reg.peer_id) > 128:
            raise InvalidArgumentError("version or peer_id is too long")
        if not reg.workloads:
            raise InvalidArgumentError(
                f"node {address} names no workloads: it predates tokenweave 0.2's task protocol; "
                "upgrade the node"
            )
        if len(reg.workloads) > 64 or any(len(w) > 40 for w in reg.workloads):
            raise InvalidArgumentError("too many workloads, or a workload name over 40 characters")
        models = [
            {"name": m.name, "sha256": m.sha256, "tokens_per_second": m.tokens_per_second}
            for m in reg.models
        ]
        now = utcnow()
        async with self._db.begin() as session:
            row = await session.get(NodeRow, address)
            if row is None:
                row = NodeRow(
                    node_id=address,
                    address=address,
                    registered_at=now,
                    reputation=1.0,
                    verifications_passed=0,
                    verifications_failed=0,
                    audits_failed=0,
                )
                session.add(row)
            self._standing.admit(row)
            row.hardware = hardware_to_json(reg.hardware)
            row.models = models
            row.version = reg.version
            row.peer_id = reg.peer_id
            row.multiaddrs = list(reg.multiaddrs)
            row.last_seen = now
        token = secrets.token_hex(16)
        self._live[address] = _Session(
            token, time.monotonic(), reg.max_inflight_shards, reg.models, reg.workloads
        )
        return address, token

    def authenticate(self, node_id: str, token: str) -> None:
        live = self._live.get(node_id)
        if live is None or not secrets.compare_digest(live.token, token):
            raise UnauthenticatedError(
                f"node {clip(node_id)} has no session with this token; register again"
            )

    def heartbeat(self, node_id: str, token: str) -> None:
        self.authenticate(node_id, token)
        self._live[node_id].last_seen = time.monotonic()

    def session_info(self, node_id: str) -> SessionInfo:
        live = self._live.get(node_id)
        if live is None:
            raise UnauthenticatedError(f"node {clip(node_id)} has no session; register again")
        return SessionInfo(live.max_inflight, live.models, frozenset(live.workloads))

    def expired(self) -> list[str]:
        """Drop and return the nodes not heard from within the expiry."""
        cutoff = time.monotonic() - self._expiry
        gone = [n for n, s in self._live.items() if s.last_seen < cutoff]
        for node_id in gone:
            del self._live[node_id]
        return gone

    def drop(self, node_id: str, token: str) -> None:
        live = self._live.get(node_id)
        if live is not None and live.token == token:
            del self._live[node_id]

    def is_online(self, node_id: str) -> bool:
        return node_id in self._live

    async def persist_last_seen(self) -> None:
        now = utcnow()
        async with self._db.begin() as session:
            for node_id, live in list(self._live.items()):
                row = await session.get(NodeRow, node_id)
                if row is not None:
                    age = time.monotonic() - live.last_seen
                    row.last_seen = now - dt.timedelta(seconds=age)

    async def list(self, running: dict[str, int], withheld: set[str]) -> list[NodeInfo]:
        async with self._db() as session:
            rows = await session.scalars(select(NodeRow).order_by(NodeRow.node_id))
            return [
                node_from_row(
                    r,
                    online=r.node_id in self._live,
                    running=running.get(r.node_id, 0),
                    withheld=r.address in withheld,
                )
                for r in rows
            ]
