"""NodeRegistry: challenge-response registration, session tokens and liveness.

A node proves it holds the key of its Ethereum address by signing a one-time challenge
(EIP-191 personal_sign). Liveness is by expiry: a node not heard from within `expiry` is offline.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave._eip191 import recover_personal
from tokenweave.coordinator._convert import hardware_to_json, node_from_row
from tokenweave.coordinator._db import NodeRow, utcnow
from tokenweave.coordinator._limits import RegistrationLimits
from tokenweave.coordinator._standing import Standing
from tokenweave.coordinator._views import NodeRegistration
from tokenweave.errors import (
    InvalidArgumentError,
    UnauthenticatedError,
    clip,
)
from tokenweave.types import ModelOffer, NodeInfo

#: Registration bounds and the challenge table's: see `RegistrationLimits`.
LIMITS = RegistrationLimits()


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


class ChallengeTable:
    """Open registration nonces: O(1) to issue and to take, bounded per address and in all.

    Nonces are kept in issue order, which is also expiry order (one TTL for all), so expired ones
    are dropped from the front as calls come; a full address or a full table drops its oldest.
    """

    def __init__(
        self,
        ttl_s: float,
        per_address: int,
        total: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._per_address = per_address
        self._total = total
        self._clock = clock
        #: nonce → (address, expiry), oldest first
        self._open: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        #: address → its nonces, oldest first
        self._by_address: dict[str, dict[bytes, None]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def open_for(self, address: str) -> int:
        return len(self._by_address.get(address, ()))

    def issue(self, address: str) -> bytes:
        now = self._clock()
        self._expire(now)
        mine = self._by_address.get(address, {})
        while len(mine) >= self._per_address:
            self._remove(next(iter(mine)))
        while len(self._open) >= self._total:
            self._remove(next(iter(self._open)))
        nonce = secrets.token_bytes(32)
        self._open[nonce] = (address, now + self._ttl)
        self._by_address.setdefault(address, {})[nonce] = None
        return nonce

    def take(self, address: str, nonce: bytes) -> bool:
        """Whether `nonce` was open for `address`; either way it is good for one attempt."""
        self._expire(self._clock())
        entry = self._open.get(nonce)
        if entry is None or entry[0] != address:
            return False
        self._remove(nonce)
        return True

    def _remove(self, nonce: bytes) -> None:
        address, _ = self._open.pop(nonce)
        mine = self._by_address[address]
        del mine[nonce]
        if not mine:
            del self._by_address[address]

    def _expire(self, now: float) -> None:
        while self._open:
            nonce, (_, expires) = next(iter(self._open.items()))
            if expires > now:
                return
            self._remove(nonce)


def _bounded_list(field: str, values: Sequence[str], count: int, chars: int) -> None:
    if len(values) > count:
        raise InvalidArgumentError(f"{field} has {len(values)} entries; at most {count} are taken")
    for i, value in enumerate(values):
        _bounded_text(f"{field}[{i}]", value, chars)


def _bounded_text(field: str, value: str, chars: int) -> None:
    if len(value) > chars:
        raise InvalidArgumentError(f"{field} is {len(value)} characters long; at most {chars}")


def check_registration(reg: NodeRegistration, limits: RegistrationLimits = LIMITS) -> None:
    """Refuse a registration whose lists or strings exceed `limits`, naming the field."""
    _bounded_list("multiaddrs", reg.multiaddrs, limits.max_multiaddrs, limits.max_multiaddr_chars)
    _bounded_list(
        "models", [m.name for m in reg.models], limits.max_models, limits.max_model_name_chars
    )
    for i, m in enumerate(reg.models):
        _bounded_text(f"models[{i}].sha256", m.sha256, 64)
    _bounded_list("workloads", reg.workloads, limits.max_workloads, limits.max_workload_chars)
    _bounded_text("version", reg.version, limits.max_version_chars)
    _bounded_text("peer_id", reg.peer_id, limits.max_peer_id_chars)
    hw = reg.hardware
    _bounded_list(
        "hardware.gpus", [g.name for g in hw.gpus], limits.max_gpus, limits.max_hardware_chars
    )
    for i, gpu in enumerate(hw.gpus):
        _bounded_text(f"hardware.gpus[{i}].compute_capability", gpu.compute_capability, 16)
    _bounded_list(
        "hardware.providers", hw.providers, limits.max_providers, limits.max_hardware_chars
    )
    _bounded_text("hardware.platform", hw.platform, limits.max_hardware_chars)


#: The longest heartbeat interval a network's size gives its nodes (15,000 nodes at 250 a second).
MAX_INTERVAL_S = 60.0


@dataclass(slots=True)
class _Session:
    token: str
    last_seen: float
    max_inflight: int
    models: tuple[ModelOffer, ...]
    workloads: tuple[str, ...]
    #: The heartbeat interval the node was given, and how long it may stay silent.
    interval_s: float
    expiry_s: float


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
        limits: RegistrationLimits = LIMITS,
        heartbeat_interval_s: float = 2.0,
        max_heartbeats_per_s: float = 250.0,
    ) -> None:
        """A node is expired after `expiry_seconds` of silence at the `heartbeat_interval_s`
        heartbeat; in a network too large for every node to beat that often within
        `max_heartbeats_per_s`, new sessions are given a longer interval, and as much longer an
        expiry (anything a node sends on its lease stream counts as a heartbeat too)."""
        self._db = sessions
        self._limits = limits
        self._coordinator_id = coordinator_id
        self._expiry = expiry_seconds
        self._interval = heartbeat_interval_s
        self._max_rate = max_heartbeats_per_s
        self._standing = standing
        self.challenges = ChallengeTable(
            limits.challenge_ttl_s, limits.max_challenges_per_address, limits.max_challenges
        )
        self._live: dict[str, _Session] = {}

    def challenge(self, address: str) -> tuple[str, bytes]:
        """A one-time nonce for `address` to sign. Several may be open at once (anyone may ask
        for one, so a new one must not void the node's own)."""
        address = normalize_address(address)
        nonce = self.challenges.issue(address)
        return challenge_message(self._coordinator_id, address, nonce), nonce

    def _verify(self, reg: NodeRegistration) -> str:
        address = normalize_address(reg.address)
        if not self.challenges.take(address, bytes(reg.nonce)):
            raise UnauthenticatedError(
                f"no open challenge for {address} with this nonce; call GetChallenge first "
                f"(challenges last {self._limits.challenge_ttl_s:.0f} s and are good for one "
                "attempt)"
            )
        message = challenge_message(self._coordinator_id, address, bytes(reg.nonce))
        try:
            signer = recover_personal(message, bytes(reg.signature))
        except ValueError as exc:
            raise UnauthenticatedError(f"malformed signature for {address}: {exc}") from None
        if signer != address:
            raise UnauthenticatedError(
                f"signature check failed: the challenge was signed by {signer}, not {address}"
            )
        return address

    async def register(self, reg: NodeRegistration) -> tuple[str, str]:
        """Verify the signature, upsert the node, and open a session; returns (node_id, token)."""
        check_registration(reg, self._limits)
        address = self._verify(reg)
        if not 1 <= reg.max_inflight_shards <= 64:
            raise InvalidArgumentError("max_inflight_shards must be between 1 and 64")
        for m in reg.models:
            if not (math.isfinite(m.tokens_per_second) and 0 < m.tokens_per_second < 1e10):
                raise InvalidArgumentError(
                    f"model {m.name[:80]!r}: tokens_per_second {m.tokens_per_second} must be a "
                    "finite positive measurement"
                )
        if not reg.workloads:
            raise InvalidArgumentError(
                f"node {address} names no workloads: it predates tokenweave 0.2's task protocol; "
                "upgrade the node"
            )
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
        interval = self._network_interval(joining=1)
        self._live[address] = _Session(
            token,
            time.monotonic(),
            reg.max_inflight_shards,
            reg.models,
            reg.workloads,
            interval,
            self._expiry * interval / self._interval,
        )
        return address, token

    def _network_interval(self, joining: int = 0) -> float:
        """The heartbeat interval that keeps the connected nodes (and `joining` more) within
        `max_heartbeats_per_s`, never under the configured one, nor over MAX_INTERVAL_S (so
        that a flood of registrations cannot stretch every node's expiry without bound)."""
        wanted = (len(self._live) + joining) / self._max_rate
        return max(self._interval, min(wanted, MAX_INTERVAL_S))

    def heartbeat_interval(self, node_id: str) -> float:
        """Seconds between the heartbeats of `node_id`'s session."""
        live = self._live.get(node_id)
        return live.interval_s if live is not None else self._interval

    def authenticate(self, node_id: str, token: str) -> None:
        live = self._live.get(node_id)
        if live is None or not secrets.compare_digest(live.token, token):
            raise UnauthenticatedError(
                f"node {clip(node_id)} has no session with this token; register again"
            )

    def heartbeat(self, node_id: str, token: str) -> float:
        """The node beat: returns the interval it beats at from now, the network's now (its
        expiry follows), so that sessions given a short one when the network was small slow
        down as it grows, and speed up again as it shrinks."""
        self.authenticate(node_id, token)
        live = self._live[node_id]
        live.last_seen = time.monotonic()
        interval = self._network_interval()
        if interval != live.interval_s:
            live.interval_s = interval
            live.expiry_s = self._expiry * interval / self._interval
        return interval

    def touch(self, node_id: str) -> None:
        """The node was heard from on its lease stream (already authenticated)."""
        live = self._live.get(node_id)
        if live is not None:
            live.last_seen = time.monotonic()

    def session_info(self, node_id: str) -> SessionInfo:
        live = self._live.get(node_id)
        if live is None:
            raise UnauthenticatedError(f"node {clip(node_id)} has no session; register again")
        return SessionInfo(live.max_inflight, live.models, frozenset(live.workloads))

    def expired(self) -> list[str]:
        """Drop and return the nodes not heard from within their expiry, or within what the
        network's size gives a new session now, if longer (a node that joined a small network
        beats often, but the coordinator of a grown one may be slow to hear it)."""
        now = time.monotonic()
        grown = self._expiry * self._network_interval() / self._interval
        gone = [n for n, s in self._live.items() if s.last_seen < now - max(s.expiry_s, grown)]
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
        """Write when each connected node was last heard from: one statement for them all,
        in node id order (the order results lock node rows in: two writers of many node rows
        in different orders deadlock on PostgreSQL)."""
        if not self._live:
            return
        now, clock = utcnow(), time.monotonic()
        seen = [
            {"node_id": node_id, "last_seen": now - dt.timedelta(seconds=clock - live.last_seen)}
            for node_id, live in sorted(self._live.items())
        ]
        async with self._db.begin() as session:
            await session.execute(update(NodeRow), seen)  # by primary key, executemany

    async def page(
        self, running: dict[str, int], withheld: set[str], size: int, after: str = ""
    ) -> tuple[list[NodeInfo], bool]:
        """Up to `size` nodes by id, those after `after`; and whether more follow."""
        query = select(NodeRow).order_by(NodeRow.node_id)
        if after:
            query = query.where(NodeRow.node_id > after)
        async with self._db() as session:
            rows = list(await session.scalars(query.limit(size + 1)))
        nodes = [
            node_from_row(
                r,
                online=r.node_id in self._live,
                running=running.get(r.node_id, 0),
                withheld=r.address in withheld,
            )
            for r in rows[:size]
        ]
        return nodes, len(rows) > size
