"""ListJobs and ListNodes come in bounded pages; the SDK and the CLI follow them."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from tests.client import test_limits as limits_tests
from tokenweave.cli import _jobs_cmd
from tokenweave.client import Client, _client
from tokenweave.client._channel import open_channel
from tokenweave.node._identity import NodeIdentity
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc, nodes_pb2, nodes_pb2_grpc

JOBS = 55
NODES = 205


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[str]:
    with (
        # 205 nodes register from this one host: more than its rate limit allows a node host.
        limits_tests.coordinator(
            tmp_path_factory.mktemp("c"), model_cache, rate_limit=1e6
        ) as running,
        limits_tests.admin_key_env(running.api_key),
    ):
        with Client(running.address, timeout=60.0) as client:
            for i in range(JOBS):
                # Cancelled at once: a client may hold only a few jobs queued at a time.
                client.embed([f"job number {i}"]).cancel()
        with grpc.insecure_channel(running.address) as channel:
            stub = nodes_pb2_grpc.NodeServiceStub(channel)
            for i in range(NODES):
                _register(stub, NodeIdentity((i + 1).to_bytes(32, "big")))
        yield running.address


def _register(stub: nodes_pb2_grpc.NodeServiceStub, identity: NodeIdentity) -> None:
    challenge = stub.GetChallenge(
        nodes_pb2.GetChallengeRequest(address=identity.address), timeout=30
    )
    stub.Register(
        nodes_pb2.RegisterRequest(
            address=identity.address,
            nonce=challenge.nonce,
            signature=identity.sign(challenge.message),
            max_inflight_shards=1,
            workloads=["embed"],
        ),
        timeout=30,
    )


@pytest.fixture
def jobs(address: str) -> Iterator[jobs_pb2_grpc.JobServiceStub]:
    with open_channel(address, api_key=os.environ["TOKENWEAVE_API_KEY"], tls_ca=None) as channel:
        yield jobs_pb2_grpc.JobServiceStub(channel)


def test_job_pages_cover_every_job_once_newest_first(jobs: jobs_pb2_grpc.JobServiceStub) -> None:
    seen: list[jobs_pb2.Job] = []
    token = ""
    pages = 0
    while True:
        page = jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=20, page_token=token), timeout=30)
        assert len(page.jobs) <= 20
        seen.extend(page.jobs)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert len({j.job_id for j in seen}) == JOBS
    created = [j.created_at.ToDatetime() for j in seen]
    assert created == sorted(created, reverse=True)


def test_a_0_1_client_gets_a_bounded_first_page(jobs: jobs_pb2_grpc.JobServiceStub) -> None:
    default = jobs.ListJobs(jobs_pb2.ListJobsRequest(), timeout=30)
    assert len(default.jobs) == 50
    assert default.next_page_token
    legacy = jobs.ListJobs(jobs_pb2.ListJobsRequest(limit=10), timeout=30)
    assert [j.job_id for j in legacy.jobs] == [j.job_id for j in default.jobs[:10]]
    nodes = jobs.ListNodes(jobs_pb2.ListNodesRequest(), timeout=30)
    assert len(nodes.nodes) == 200
    assert nodes.next_page_token


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "x" * 300,
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(json.dumps(["jobs", "yesterday", "j"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["jobs", "2026-01-01T00:00:00+00:00", "j"]).encode())
        .decode()
        .rstrip("="),
        base64.urlsafe_b64encode(json.dumps(["nodes", "0xabc"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps({"jobs": 1}).encode()).decode(),
    ],
)
def test_a_page_token_the_server_did_not_make_is_refused(
    jobs: jobs_pb2_grpc.JobServiceStub, token: str
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        jobs.ListJobs(jobs_pb2.ListJobsRequest(page_token=token), timeout=30)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_token" in (refused.value.details() or "")


def test_a_jobs_token_is_no_nodes_token(jobs: jobs_pb2_grpc.JobServiceStub) -> None:
    token = jobs.ListJobs(jobs_pb2.ListJobsRequest(page_size=1), timeout=30).next_page_token
    with pytest.raises(grpc.RpcError) as refused:
        jobs.ListNodes(jobs_pb2.ListNodesRequest(page_token=token), timeout=30)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT


def test_pages_above_the_maximum_are_refused(jobs: jobs_pb2_grpc.JobServiceStub) -> None:
    for call, request, message in (
        (jobs.ListJobs, jobs_pb2.ListJobsRequest(page_size=501), "page_size=501"),
        (jobs.ListJobs, jobs_pb2.ListJobsRequest(limit=1001), "limit=1001"),
        (jobs.ListNodes, jobs_pb2.ListNodesRequest(page_size=1001), "page_size=1001"),
    ):
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=30)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert message in (refused.value.details() or "")


def test_the_sdk_follows_pages(address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "JOB_PAGE", 7)
    with Client(address, timeout=60.0) as client:
        nodes = client.nodes()
        assert len(nodes) == NODES
        assert len({n.node_id for n in nodes}) == NODES
        assert len(client.jobs(30)) == 30
        every = client.jobs(1000)
        assert len(every) == JOBS
        assert [j.job_id for j in client.jobs(30)] == [j.job_id for j in every[:30]]
        assert len(client.jobs(0)) == 50


def test_the_cli_lists_every_job_asked_for(
    address: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with Client(address, timeout=60.0) as client:
        assert _jobs_cmd.list_jobs(client, 60, as_json=True) == 0
        assert len(json.loads(capsys.readouterr().out)) == JOBS
        assert _jobs_cmd.list_nodes(client, as_json=True) == 0
        assert len(json.loads(capsys.readouterr().out)) == NODES
