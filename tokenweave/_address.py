"""Network addresses as users type them: HOST[:PORT], parsed strictly.

gRPC takes whatever it is given: `localhost` dials port 443, `http://127.0.0.1:50051` fails with
an empty message, and `--listen 127.0.0.1` binds 443. Every address a user types goes through
`parse_address` first: the port defaults to the coordinator's (50051), a URL is refused with the
form to use instead, and the result is what gRPC expects (`host:port`, IPv6 in brackets).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from tokenweave.errors import InvalidArgumentError

#: The coordinator's gRPC port when an address names none.
DEFAULT_PORT = 50051
#: The coordinator's HTTP port (OpenAI and KServe APIs, metrics, dashboard) when none is named.
HTTP_PORT = 8000

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: A DNS name: dot-separated labels of letters, digits and inner hyphens.
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")


def _host(host: str) -> str:
    """A host name or address as gRPC wants it (IPv6 in brackets); raises ValueError."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        if host != bare or not _HOSTNAME.match(host):
            raise
        return host
    return f"[{ip}]" if ip.version == 6 else str(ip)


def parse_address(
    text: str, what: str = "address", default_port: int = DEFAULT_PORT, listen: bool = False
) -> str:
    """`text` (HOST, HOST:PORT, [IPv6]:PORT, or a bare IPv6 address) as `host:port`.
    `listen`: port 0 (any free port) is allowed. Raises InvalidArgumentError naming `what`."""
    raw = text.strip()
    example = f"127.0.0.1:{default_port}"
    if not raw:
        raise InvalidArgumentError(f"{what} is empty; give HOST or HOST:PORT, e.g. {example}")
    if "://" in raw:
        url = urlsplit(raw)
        hint = f"{url.hostname}:{url.port or default_port}" if url.hostname else example
        raise InvalidArgumentError(
            f"{what} {raw!r} is a URL; give HOST:PORT instead, e.g. {hint} "
            "(TLS comes from --tls-ca, not from a scheme)"
        )
    if raw.startswith("["):  # [v6] or [v6]:port
        host, _, rest = raw.partition("]")
        host += "]"
        if rest and not rest.startswith(":"):
            raise InvalidArgumentError(f"{what} {raw!r}: expected [IPv6]:PORT")
        port_text = rest[1:] if rest else ""
    elif raw.count(":") > 1:  # a bare IPv6 address: no port can be told apart
        host, port_text = raw, ""
    else:
        host, _, port_text = raw.partition(":")
    try:
        host = _host(host)
    except ValueError:
        raise InvalidArgumentError(
            f"{what} {raw!r}: {host!r} is not a host name or IP address"
        ) from None
    if not port_text:
        return f"{host}:{default_port}"
    if not port_text.isdigit() or not (0 if listen else 1) <= int(port_text) <= 65535:
        raise InvalidArgumentError(
            f"{what} {raw!r}: the port must be a number from {0 if listen else 1} to 65535"
        )
    return f"{host}:{int(port_text)}"


def parse_addresses(text: str, what: str = "address") -> tuple[str, ...]:
    """Comma-separated addresses (`parse_address` each); at least one."""
    parts = [p for p in text.split(",") if p.strip()]
    if not parts:
        raise InvalidArgumentError(f"{what} is empty; give HOST:PORT[,HOST:PORT...]")
    return tuple(parse_address(p, what) for p in parts)
