"""ServiceLimits: what one connection, one stream or one message may take from the coordinator.

Anyone can reach the coordinator's port, so nothing a peer sends may grow without a bound:

* connections — a cap on open TCP connections (the rest are closed before any handshake, so
  idle sockets cannot use up the file descriptors), a deadline for a new connection to speak
  HTTP/2, idle and maximum ages, and keepalive pings that find dead peers;
* streams — concurrent HTTP/2 streams per connection, and `WatchStreams`: long-lived WatchJob
  streams, counted globally and per peer host, the next one refused with RESOURCE_EXHAUSTED;
* messages — the largest message received or sent.

`ServiceLimits.server_options()` turns them into grpc core channel arguments.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tokenweave.errors import ResourceExhaustedError

if TYPE_CHECKING:
    from tokenweave.coordinator._config import CoordinatorConfig

logger = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServiceLimits:
    """Bounds on what clients and nodes may hold open on the coordinator's gRPC port."""

    #: Open TCP connections at once; more are closed as they arrive. A client or a node uses
    #: one; 1,100 idle ones exhausted the default 1,024 file descriptors.
    max_connections: int = 512
    #: Seconds a new connection has to send its HTTP/2 preface and settings.
    handshake_timeout_s: float = 10.0
    #: A connection with no call for this long is closed (GOAWAY); clients reconnect on demand.
    max_connection_idle_s: float = 300.0
    #: A connection is asked to go away after this long, whatever it does (0: never). Nodes hold
    #: a lease stream for hours, and a forced reconnect costs them their session, so the default
    #: is off; the idle limit and the keepalive close dead and idle ones.
    max_connection_age_s: float = 0.0
    #: Calls still running when a connection reaches its age get this long to finish.
    max_connection_age_grace_s: float = 30.0
    #: The server pings a connection silent for this long, and closes it when no answer comes
    #: within `keepalive_timeout_s` (a peer gone without a FIN).
    keepalive_time_s: float = 60.0
    keepalive_timeout_s: float = 20.0
    #: Pings the server accepts from a client at most this often; more often is a strike, and
    #: `max_ping_strikes` of them close the connection (a ping flood).
    min_client_ping_interval_s: float = 10.0
    max_ping_strikes: int = 2
    #: Concurrent calls (HTTP/2 streams) on one connection.
    max_concurrent_streams: int = 100
    #: Concurrent WatchJob streams, in all and from one peer host.
    max_watch_streams: int = 1000
    max_watch_streams_per_peer: int = 32
    #: The largest message the coordinator accepts, and the largest it sends (a document's result
    #: is one message). Documents themselves are bounded by `--max-document-bytes` (8 MiB).
    max_receive_message_bytes: int = 64 * MIB
    max_send_message_bytes: int = 64 * MIB
    #: Header bytes per call.
    max_metadata_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            if getattr(self, name) < 0:
                raise ValueError(f"ServiceLimits.{name} must not be negative")

    def server_options(self) -> list[tuple[str, int]]:
        """grpc core channel arguments for `grpc.aio.server(options=...)`."""

        def ms(seconds: float) -> int:
            return max(1, round(seconds * 1000))

        options = [
            ("grpc.max_receive_message_length", self.max_receive_message_bytes),
            ("grpc.max_send_message_length", self.max_send_message_bytes),
            ("grpc.max_metadata_size", self.max_metadata_bytes),
            ("grpc.absolute_max_metadata_size", self.max_metadata_bytes),
            ("grpc.max_allowed_incoming_connections", self.max_connections),
            ("grpc.server_handshake_timeout_ms", ms(self.handshake_timeout_s)),
            ("grpc.max_connection_idle_ms", ms(self.max_connection_idle_s)),
            ("grpc.keepalive_time_ms", ms(self.keepalive_time_s)),
            ("grpc.keepalive_timeout_ms", ms(self.keepalive_timeout_s)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", ms(self.min_client_ping_interval_s)),
            ("grpc.http2.max_ping_strikes", self.max_ping_strikes),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_concurrent_streams", self.max_concurrent_streams),
            # One coordinator per port: a second one fails to bind instead of sharing it.
            ("grpc.so_reuseport", 0),
        ]
        if self.max_connection_age_s:
            options += [
                ("grpc.max_connection_age_ms", ms(self.max_connection_age_s)),
                ("grpc.max_connection_age_grace_ms", ms(self.max_connection_age_grace_s)),
            ]
        return options


def peer_host(peer: str) -> str:
    """The host part of a grpc peer string ("ipv4:127.0.0.1:5000" → "ipv4:127.0.0.1")."""
    if peer.startswith(("ipv4:", "ipv6:")):
        return peer.rsplit(":", 1)[0]
    return peer


class WatchStreams:
    """Counts open WatchJob streams; `open(peer)` refuses one past either cap."""

    def __init__(self, total: int, per_peer: int) -> None:
        self._total = total
        self._per_peer = per_peer
        self._open: Counter[str] = Counter()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @contextmanager
    def open(self, peer: str) -> Iterator[None]:
        host = peer_host(peer)
        if self._count >= self._total:
            raise ResourceExhaustedError(
                f"the coordinator has {self._count} WatchJob streams open, its limit of "
                f"{self._total} (max_watch_streams); retry later or poll GetJob"
            )
        if self._open[host] >= self._per_peer:
            raise ResourceExhaustedError(
                f"this client already has {self._open[host]} WatchJob streams open, the limit of "
                f"{self._per_peer} per client address (max_watch_streams_per_peer)"
            )
        self._open[host] += 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            self._open[host] -= 1
            if not self._open[host]:
                del self._open[host]


@dataclass(frozen=True, slots=True)
class RegistrationLimits:
    """What one node's registration may hold (it is stored, and every ListNodes returns it).

    Three fake nodes that registered 90 MB of multiaddrs made ListNodes fail for everyone."""

    max_multiaddrs: int = 32
    max_multiaddr_chars: int = 256
    max_models: int = 32
    max_model_name_chars: int = 64
    max_workloads: int = 64
    max_workload_chars: int = 40
    max_version_chars: int = 40
    max_peer_id_chars: int = 128
    max_gpus: int = 16
    max_providers: int = 16
    #: GPU names, execution providers and the platform string.
    max_hardware_chars: int = 128
    #: Open registration challenges per address (the oldest gives way) and in all (likewise: an
    #: honest node answers its challenge within a round trip, long before thousands arrive).
    max_challenges_per_address: int = 8
    max_challenges: int = 10_000
    challenge_ttl_s: float = 60.0


def service_limits(config: CoordinatorConfig) -> ServiceLimits:
    """The defaults, with what the coordinator's configuration sets."""
    return dataclasses.replace(
        ServiceLimits(),
        max_connections=config.max_connections,
        max_watch_streams=config.max_watch_streams,
        max_watch_streams_per_peer=config.max_watch_streams_per_client,
    )


def server_options(config: CoordinatorConfig, limits: ServiceLimits) -> list[tuple[str, int]]:
    """The limits' channel arguments. `config.max_message_bytes` may only lower the message caps,
    and connections are capped at half the process's file descriptors, whatever the limits say
    (the database, the chain, logs and libp2p need the rest)."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    connections = limits.max_connections
    if nofile != resource.RLIM_INFINITY and connections > nofile // 2:
        connections = max(1, nofile // 2)
        logger.warning(
            "at most %d connections (half the %d file descriptors this process may open)",
            connections,
            nofile,
        )
    caps = {
        "grpc.max_receive_message_length": min(
            config.max_message_bytes, limits.max_receive_message_bytes
        ),
        "grpc.max_send_message_length": min(
            config.max_message_bytes, limits.max_send_message_bytes
        ),
        "grpc.max_allowed_incoming_connections": connections,
    }
    return [(name, caps.get(name, value)) for name, value in limits.server_options()]
