"""Fuzzing every RPC of a real coordinator process with hypothesis.

For each method of each service, requests are drawn from its message descriptor (every field
type, extreme numbers, long and odd strings, nested messages, unknown enum values) and, one time
in eight, as raw bytes that need not parse at all. Each call runs under a deadline. The
coordinator (over TLS, with its admin key, so that requests reach as deep as any caller's) must
answer every one with a deliberate status: never INTERNAL or UNKNOWN, never a unary call left
hanging, and nothing stored for a request it refused.

The inputs tried and the statuses seen per RPC are written to `build/fuzz-report.txt` (the
README quotes them). `FUZZ_EXAMPLES` sets the examples per RPC (default 40, bounded for CI).
"""

from __future__ import annotations

import collections
import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import descriptor, message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenweave.cli import LocalCluster
from tokenweave.v1 import (
    auth_pb2,
    data_pb2,
    jobs_pb2,
    nodes_pb2,
    rewards_pb2,
)

from .conftest import ClusterFactory, query

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
DEADLINE_S = 10.0
FORBIDDEN = {"INTERNAL", "UNKNOWN"}
#: Streams that rightly stay open with nothing to say.
WAITS_FOR_NEWS = {"WatchJob", "StreamJobOutput"}
REPORT = Path(__file__).resolve().parents[2] / "build" / "fuzz-report.txt"

METHODS = [
    method
    for module in (jobs_pb2, nodes_pb2, rewards_pb2, data_pb2, auth_pb2)
    for service in module.DESCRIPTOR.services_by_name.values()
    for method in service.methods
]

FD = descriptor.FieldDescriptor
_INTS = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}
_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "..", "/", "\x00", "é" * 300, "a" * 5000, "embed"]),
    st.from_regex(r"[0-9a-f]{32}(-[0-9]{1,3})?", fullmatch=True),
)


def _scalar(field: descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type in _INTS:
        low, high = _INTS[field.type]
        return st.one_of(
            st.sampled_from([low, high, 0, 1, -1 if low < 0 else 2]), st.integers(low, high)
        )
    if field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if field.type == FD.TYPE_BOOL:
        return st.booleans()
    if field.type == FD.TYPE_STRING:
        return _TEXT
    if field.type == FD.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\xff" * 100_000))
    if field.type == FD.TYPE_ENUM:
        return st.integers(-1, len(field.enum_type.values) + 2)
    raise AssertionError(f"no strategy for {field.full_name}")


def _message(desc: descriptor.Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Messages of `desc` with any subset of their fields set."""
    cls = message_factory.GetMessageClass(desc)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.type == FD.TYPE_MESSAGE:
            if depth >= 2:
                continue
            if field.message_type.GetOptions().map_entry:
                key, value = field.message_type.fields
                if value.type == FD.TYPE_MESSAGE:
                    continue
                fields[field.name] = st.dictionaries(_scalar(key), _scalar(value), max_size=4)
                continue
            inner = _message(field.message_type, depth + 1)
        else:
            inner = _scalar(field)
        repeated = field.label == FD.LABEL_REPEATED
        fields[field.name] = st.lists(inner, max_size=4) if repeated else inner

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        msg = cls()
        for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []:
            value = draw(fields[name])
            target = getattr(msg, name)
            try:
                if isinstance(value, dict):
                    for k, v in value.items():
                        target[k] = v
                elif isinstance(value, list):
                    for item in value:
                        if hasattr(item, "SerializeToString"):
                            target.add().CopyFrom(item)
                        else:
                            target.append(item)
                elif hasattr(value, "SerializeToString"):
                    target.CopyFrom(value)
                else:
                    setattr(msg, name, value)
            except (ValueError, TypeError):
                pass  # a value the field itself refuses (an unknown enum in proto3 is fine)
        return msg

    return build()


#: Requests that get past the first checks, so that fuzzing reaches deeper (a job that plans).
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "SubmitJob": st.builds(
        jobs_pb2.SubmitJobRequest,
        model=st.sampled_from(["all-minilm-l6-v2", ""]),
        workload=st.sampled_from(["embed", "", "Embed"]),
        documents=st.lists(
            st.builds(jobs_pb2.Document, name=_TEXT, text=st.text(min_size=1, max_size=300)),
            min_size=1,
            max_size=3,
        ),
        window=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        overlap=st.one_of(st.none(), st.integers(0, 600)),
        options=st.dictionaries(st.sampled_from(["window", "overlap", "x", ""]), _TEXT, max_size=2),
    ),
}


def _request(method: descriptor.MethodDescriptor) -> st.SearchStrategy[bytes]:
    parsed = _message(method.input_type)
    if method.name in PLAUSIBLE:
        parsed = st.one_of(parsed, PLAUSIBLE[method.name], PLAUSIBLE[method.name])
    raw = parsed.map(lambda m: m.SerializeToString())
    return st.one_of(raw, raw, raw, raw, raw, raw, raw, st.binary(max_size=256))


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    # No rate limit here (its own tests are in tests/coordinator/test_auth.py): every input
    # should reach its handler.
    cluster = module_cluster_factory(
        coordinator_args=(
            "--rate-limit", "1e9", "--rate-burst", "1e9", "--http-listen", "127.0.0.1:0",
        )
    )  # fmt: skip
    cluster.start_coordinator()
    return cluster


@pytest.fixture(scope="module")
def channel(cluster: LocalCluster) -> Iterator[grpc.Channel]:
    """Over TLS with the admin key: requests reach as deep as any caller's can."""
    with cluster.channel() as channel:
        yield channel


SEEN: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def _call(channel: grpc.Channel, method: descriptor.MethodDescriptor, raw: bytes) -> str:
    path = f"/{method.containing_service.full_name}/{method.name}"
    identity = lambda b: b  # noqa: E731 - raw bytes both ways
    try:
        if method.client_streaming and method.server_streaming:
            stream = channel.stream_stream(path, identity, identity)
            for _ in stream(iter([raw, raw]), timeout=DEADLINE_S):
                break
        elif method.client_streaming:
            channel.stream_unary(path, identity, identity)(iter([raw, raw]), timeout=DEADLINE_S)
        elif method.server_streaming:
            responses = channel.unary_stream(path, identity, identity)(raw, timeout=DEADLINE_S)
            for _ in responses:
                break
            responses.cancel()
        else:
            channel.unary_unary(path, identity, identity)(raw, timeout=DEADLINE_S)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        if code is grpc.StatusCode.CANCELLED and method.server_streaming:
            return "OK"  # we hung up on a stream that answered
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and method.name in WAITS_FOR_NEWS:
            return "OPEN"  # WatchJob on a queued job waits for news: that is no hang
        return code.name
    return "OK"


@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_every_rpc_answers_garbage_with_a_deliberate_status(
    channel: grpc.Channel, method: descriptor.MethodDescriptor
) -> None:
    seen = SEEN[f"{method.containing_service.name}.{method.name}"]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(raw=_request(method))
    def run(raw: bytes) -> None:
        status = _call(channel, method, raw)
        seen[status] += 1
        assert status not in FORBIDDEN, f"{method.full_name} answered {status}"
        assert status != "DEADLINE_EXCEEDED", f"{method.full_name} hung"

    run()


#: The OpenAI API's routes. Bodies name no model this coordinator serves (it serves MiniLM, and
#: has no nodes): a well-formed request would wait for a node, so fuzzing stays on refusals.
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/embeddings")
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = st.fixed_dictionaries(
    {"model": st.sampled_from(["gpt-17", "", "../x", "smollm2-135m-instruct"])},
    optional={
        "messages": _JSON
        | st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "system", "assistant", "robot"]),
                    "content": st.text(max_size=20),
                }
            ),
            max_size=3,
        ),
        "prompt": _JSON | st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=3),
        "input": _JSON | st.text(max_size=40) | st.lists(st.text(max_size=10), max_size=3),
        "max_tokens": _JSON | st.integers(-5, 10**12),
        "temperature": _JSON | st.floats(allow_nan=True),
        "top_p": _JSON,
        "stop": _JSON,
        "stream": _JSON,
        "n": _JSON,
    },
)
_MODELS = st.sampled_from(["gpt-17", "", "../x", "smollm2-135m-instruct"])
_MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant"]), "content": st.text(max_size=20)}
)
#: Well-typed bodies, to reach past validation (to the key, the model, the options).
_PLAUSIBLE = st.one_of(
    st.fixed_dictionaries(
        {"model": _MODELS, "messages": st.lists(_MESSAGE, max_size=3)},
        optional={"max_tokens": st.integers(-5, 10**6), "temperature": st.floats(-1, 3)},
    ),
    st.fixed_dictionaries({"model": _MODELS, "prompt": st.text(max_size=40)}),
    st.fixed_dictionaries({"model": _MODELS, "input": st.text(max_size=40)}),
)
_BODIES = st.one_of(
    _PLAUSIBLE.map(lambda b: json.dumps(b).encode()),
    _PLAUSIBLE.map(lambda b: json.dumps(b).encode()),
    _FIELDS.map(lambda b: json.dumps(b).encode()),
    _JSON.map(lambda b: json.dumps(b).encode()),
    st.binary(max_size=256),
)
#: Statuses a refusal may have; never 500, never a hang.
HTTP_REFUSALS = {400, 401, 403, 404, 405, 413, 422, 429}


@pytest.mark.parametrize("route", ROUTES)
def test_every_http_route_answers_garbage_with_a_deliberate_status(
    cluster: LocalCluster, route: str
) -> None:
    assert cluster.http_url is not None
    assert cluster.ca is not None
    seen = SEEN[f"HTTP POST {route}"]
    verify = ssl.create_default_context(cafile=str(cluster.ca))
    with httpx.Client(verify=verify, timeout=DEADLINE_S) as http:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(body=_BODIES, keyed=st.booleans())
        def run(body: bytes, keyed: bool) -> None:
            headers = {"Authorization": f"Bearer {cluster.api_key}"} if keyed else {}
            headers["Content-Type"] = "application/json"
            response = http.post(cluster.http_url + route, content=body, headers=headers)
            seen[str(response.status_code)] += 1
            assert response.status_code in HTTP_REFUSALS, response.text[:300]
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}

        run()


def test_nothing_is_stored_for_a_refused_request(cluster: LocalCluster) -> None:
    """Every job and key in the database is one whose call was answered OK (and the admin's)."""
    ((jobs,),) = query(cluster, "SELECT count(*) FROM jobs")
    ((keys,),) = query(cluster, "SELECT count(*) FROM api_keys")
    assert jobs == SEEN["JobService.SubmitJob"]["OK"]
    assert keys == 1 + SEEN["AuthService.CreateKey"]["OK"]
    REPORT.parent.mkdir(exist_ok=True)
    lines = [f"{'RPC':<34} {'inputs':>6}  statuses"]
    for name in sorted(SEEN):
        counts = SEEN[name]
        statuses = ", ".join(f"{s} {n}" for s, n in counts.most_common())
        lines.append(f"{name:<34} {sum(counts.values()):>6}  {statuses}")
    REPORT.write_text("\n".join(lines) + "\n")
