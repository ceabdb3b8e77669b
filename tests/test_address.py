"""Addresses as users type them (`tokenweave._address`)."""

from __future__ import annotations

import pytest

from tokenweave._address import parse_address, parse_addresses
from tokenweave.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        ("localhost", "localhost:50051"),  # gRPC alone dialled 443
        ("127.0.0.1", "127.0.0.1:50051"),
        (" coordinator:7000 ", "coordinator:7000"),
        ("::1", "[::1]:50051"),
        ("[::1]:7", "[::1]:7"),
        ("node-1.example.org", "node-1.example.org:50051"),
    ],
)
def test_a_missing_port_is_the_coordinators(given: str, parsed: str) -> None:
    assert parse_address(given) == parsed


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("http://127.0.0.1:50051", r"is a URL; give HOST:PORT instead, e\.g\. 127\.0\.0\.1:50051"),
        ("grpc://h", r"is a URL; give HOST:PORT instead, e\.g\. h:50051"),
        ("", "is empty"),
        ("host:0", "port must be a number from 1 to 65535"),
        ("host:70000", "port must be a number"),
        ("host:http", "port must be a number"),
        ("bad host", "not a host name or IP address"),
        ("under_score:1", "not a host name"),
        ("[::1]x", r"expected \[IPv6\]:PORT"),
    ],
)
def test_what_is_not_an_address_is_refused_with_the_form_to_use(given: str, reason: str) -> None:
    with pytest.raises(InvalidArgumentError, match=reason):
        parse_address(given, "--coordinator")


def test_listening_may_ask_for_any_free_port_and_lists_parse_each() -> None:
    assert parse_address("127.0.0.1:0", listen=True) == "127.0.0.1:0"
    assert parse_address("0.0.0.0", "--http-listen", 8000, listen=True) == "0.0.0.0:8000"
    assert parse_addresses("a, b:2,") == ("a:50051", "b:2")
    with pytest.raises(InvalidArgumentError, match="is empty"):
        parse_addresses(" , ")
