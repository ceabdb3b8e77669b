"""A node's registration is bounded field by field, and its challenges are a bounded table.

Three fake nodes that registered 90 MB of multiaddrs used to make ListNodes fail for everyone,
for good (the rows stayed); 40k open challenges made every GetChallenge rebuild the table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.client import test_limits as limits_tests
from tokenweave.client import Client
from tokenweave.coordinator._limits import RegistrationLimits
from tokenweave.coordinator._nodes import ChallengeTable
from tokenweave.node._identity import NodeIdentity
from tokenweave.v1 import jobs_pb2, nodes_pb2, nodes_pb2_grpc

LIMITS = RegistrationLimits()


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[str]:
    with (
        limits_tests.coordinator(tmp_path_factory.mktemp("c"), model_cache) as running,
        limits_tests.admin_key_env(running.api_key),
    ):
        yield running.address


@pytest.fixture
def nodes(address: str) -> Iterator[nodes_pb2_grpc.NodeServiceStub]:
    with grpc.insecure_channel(address) as channel:
        yield nodes_pb2_grpc.NodeServiceStub(channel)


def _register(stub: nodes_pb2_grpc.NodeServiceStub, **fields: object) -> nodes_pb2.RegisterResponse:
    identity = NodeIdentity(b"\x01" * 32)
    challenge = stub.GetChallenge(
        nodes_pb2.GetChallengeRequest(address=identity.address), timeout=30
    )
    request = nodes_pb2.RegisterRequest(
        address=identity.address,
        nonce=challenge.nonce,
        signature=identity.sign(challenge.message),
        hardware=jobs_pb2.Hardware(cpu_cores=2, memory_bytes=2**30, platform="linux"),
        models=[jobs_pb2.NodeModel(name="all-minilm-l6-v2", sha256="0" * 64, tokens_per_second=1)],
        max_inflight_shards=2,
        version="0.2.0",
        peer_id="12D3KooW",
        multiaddrs=["/ip4/127.0.0.1/tcp/4001"],
        workloads=["embed"],
    )
    for name, value in fields.items():
        field = getattr(request, name)
        if isinstance(value, list):
            del field[:]
            field.extend(value)
        elif isinstance(value, jobs_pb2.Hardware):
            field.CopyFrom(value)
        else:
            setattr(request, name, value)
    return stub.Register(request, timeout=30)


OVERSIZED = [
    ("multiaddrs", ["/ip4/127.0.0.1/tcp/1"] * 33, "multiaddrs has 33 entries; at most 32"),
    ("multiaddrs", ["/dns/" + "a" * 300], "multiaddrs[0] is 305 characters long; at most 256"),
    (
        "models",
        [jobs_pb2.NodeModel(name=f"m{i}", sha256="0" * 64, tokens_per_second=1) for i in range(33)],
        "models has 33 entries; at most 32",
    ),
    (
        "models",
        [jobs_pb2.NodeModel(name="m" * 65, sha256="0" * 64, tokens_per_second=1)],
        "models[0] is 65 characters long; at most 64",
    ),
    ("workloads", ["embed"] * 65, "workloads has 65 entries; at most 64"),
    ("workloads", ["w" * 41], "workloads[0] is 41 characters long; at most 40"),
    ("version", "v" * 41, "version is 41 characters long; at most 40"),
    ("peer_id", "p" * 129, "peer_id is 129 characters long; at most 128"),
    (
        "hardware",
        jobs_pb2.Hardware(gpus=[jobs_pb2.Gpu(name="g")] * 17),
        "hardware.gpus has 17 entries; at most 16",
    ),
    (
        "hardware",
        jobs_pb2.Hardware(providers=["x" * 129]),
        "hardware.providers[0] is 129 characters long; at most 128",
    ),
    (
        "hardware",
        jobs_pb2.Hardware(platform="x" * 129),
        "hardware.platform is 129 characters long; at most 128",
    ),
]


@pytest.mark.parametrize(("field", "value", "message"), OVERSIZED)
def test_oversized_fields_are_refused_by_name(
    nodes: nodes_pb2_grpc.NodeServiceStub, address: str, field: str, value: object, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        _register(nodes, **{field: value})
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert message in (refused.value.details() or "")
    with Client(address, timeout=30.0) as client:
        assert all(n.address != NodeIdentity(b"\x01" * 32).address for n in client.nodes())


def test_a_registration_at_the_limits_is_taken(
    nodes: nodes_pb2_grpc.NodeServiceStub, address: str
) -> None:
    response = _register(
        nodes,
        multiaddrs=[f"/dns/{'a' * 240}/tcp/{i}" for i in range(LIMITS.max_multiaddrs)],
        workloads=["embed"],
    )
    assert response.session_token
    with Client(address, timeout=30.0) as client:
        (node,) = [n for n in client.nodes() if n.node_id == response.node_id]
    assert len(node.multiaddrs) == LIMITS.max_multiaddrs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_challenges_are_one_attempt_and_expire() -> None:
    clock = Clock()
    table = ChallengeTable(ttl_s=60, per_address=8, total=100, clock=clock)
    nonce = table.issue("0xa")
    assert not table.take("0xb", nonce), "another address's nonce"
    assert table.take("0xa", nonce)
    assert not table.take("0xa", nonce), "good for one attempt"

    late = table.issue("0xa")
    clock.now += 60
    assert not table.take("0xa", late)
    assert len(table) == 0


def test_the_challenge_table_is_bounded_per_address_and_in_all() -> None:
    """40k requests used to leave 40k open challenges, each call rebuilding the table."""
    clock = Clock()
    table = ChallengeTable(ttl_s=60, per_address=8, total=1000, clock=clock)
    first = table.issue("0xa")
    for _ in range(20):
        table.issue("0xa")
    assert table.open_for("0xa") == 8
    assert not table.take("0xa", first), "the oldest gave way"

    for i in range(40_000):
        table.issue(f"0x{i:040x}")
        clock.now += 0.001
    assert len(table) == 1000
    honest = table.issue("0xhonest")
    assert table.take("0xhonest", honest)

    clock.now += 61  # every challenge expires; the next call clears them
    table.issue("0xa")
    assert len(table) == 1
