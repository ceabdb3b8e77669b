"""Bad input gets the right gRPC status and a message naming what was wrong, and changes nothing."""

from __future__ import annotations

import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tokenweave.cli import LocalCluster
from tokenweave.client import Client, JobStatus
from tokenweave.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    TokenweaveError,
)
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc, nodes_pb2, nodes_pb2_grpc

from .conftest import ClusterFactory

MAX_DOCUMENT_BYTES = 20_000


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    return module_cluster_factory(
        nodes=1, coordinator_args=("--max-document-bytes", str(MAX_DOCUMENT_BYTES))
    )


@pytest.fixture
def client(cluster: LocalCluster) -> Client:
    return cluster.client()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"documents": ["x"], "model": "gpt-17"}, NotFoundError, "unknown model 'gpt-17'"),
        ({"documents": []}, InvalidArgumentError, "the job has no documents"),
        (
            {"documents": [("a.txt", "fine"), ("b.txt", "  \n")]},
            InvalidArgumentError,
            "document 1 \\('b.txt'\\) is empty",
        ),
        (
            {"documents": ["text"], "window": 64, "overlap": 64},
            InvalidArgumentError,
            "overlap=64 must be smaller than window=64",
        ),
        (
            {"documents": ["text"], "window": 1024},
            InvalidArgumentError,
            "window=1024 is above the model's maximum of 512",
        ),
        (
            {"documents": ["x" * (MAX_DOCUMENT_BYTES + 1)]},
            InvalidArgumentError,
            f"limit is {MAX_DOCUMENT_BYTES} bytes",
        ),
        ({"documents": ["\u200b\u200b"]}, InvalidArgumentError, "has no tokens"),
    ],
)
def test_bad_jobs_are_refused_and_change_nothing(
    client: Client, kwargs: dict[str, object], error: type[TokenweaveError], message: str
) -> None:
    before = [j.job_id for j in client.jobs()]
    with pytest.raises(error, match=message):
        client.embed(**kwargs)  # type: ignore[arg-type]
    assert [j.job_id for j in client.jobs()] == before


def _jobs_stub(cluster: LocalCluster) -> tuple[grpc.Channel, jobs_pb2_grpc.JobServiceStub]:
    channel = cluster.channel()
    return channel, jobs_pb2_grpc.JobServiceStub(channel)


def test_malformed_requests(cluster: LocalCluster) -> None:
    channel, stub = _jobs_stub(cluster)
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitJob(jobs_pb2.SubmitJobRequest(documents=[jobs_pb2.Document(text="x")]))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "model is required" in info.value.details()

        with pytest.raises(grpc.RpcError) as info:
            stub.GetJob(jobs_pb2.GetJobRequest())
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "job_id is required" in info.value.details()

        with pytest.raises(grpc.RpcError) as info:
            stub.GetJob(jobs_pb2.GetJobRequest(job_id="nope"))
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert "'nope'" in info.value.details()

        with pytest.raises(grpc.RpcError) as info:
            stub.ListJobs(jobs_pb2.ListJobsRequest(limit=10**6))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # Bytes that are not a SubmitJobRequest at all.
        raw = channel.unary_unary("/tokenweave.v1.JobService/SubmitJob")
        with pytest.raises(grpc.RpcError) as info:
            raw(b"\xff\xff\xff\xff")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "malformed request to /tokenweave.v1.JobService/SubmitJob" in info.value.details()


def test_results_of_an_unfinished_or_unknown_job(cluster_factory: ClusterFactory) -> None:
    idle = cluster_factory()  # a coordinator without nodes: jobs stay queued
    idle.start_coordinator()
    client = idle.client()
    with pytest.raises(NotFoundError):
        client.job("0" * 32)
    job = client.embed(["a short text"])
    assert job.refresh().status is JobStatus.QUEUED
    with pytest.raises(
        FailedPreconditionError, match="QUEUED; results exist once it has SUCCEEDED"
    ):
        list(client._results(job.id))
    job.cancel()
    with pytest.raises(FailedPreconditionError, match="CANCELLED"):
        job.result()
    with pytest.raises(FailedPreconditionError, match="already CANCELLED"):
        job.cancel()


def _node_stub(cluster: LocalCluster) -> tuple[grpc.Channel, nodes_pb2_grpc.NodeServiceStub]:
    channel = cluster.channel()
    return channel, nodes_pb2_grpc.NodeServiceStub(channel)


def _register(
    stub: nodes_pb2_grpc.NodeServiceStub, signer: object, address: str
) -> nodes_pb2.RegisterResponse:
    challenge = stub.GetChallenge(nodes_pb2.GetChallengeRequest(address=address))
    signature = Account.sign_message(encode_defunct(text=challenge.message), signer.key).signature  # type: ignore[attr-defined]
    return stub.Register(
        nodes_pb2.RegisterRequest(
            address=address,
            nonce=challenge.nonce,
            signature=bytes(signature),
            hardware=jobs_pb2.Hardware(cpu_cores=1),
            max_inflight_shards=1,
            version="test",
            workloads=["embed"],
        )
    )


def test_a_node_that_fails_the_signature_check_is_refused(cluster: LocalCluster) -> None:
    honest, impostor = Account.create(), Account.create()
    channel, stub = _node_stub(cluster)
    with channel:
        with pytest.raises(grpc.RpcError) as info:
            _register(stub, impostor, honest.address)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "signature check failed" in info.value.details()
        assert impostor.address.lower() in info.value.details()

        with pytest.raises(grpc.RpcError) as info:
            stub.Register(nodes_pb2.RegisterRequest(address=honest.address, nonce=b"x" * 32))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "no open challenge" in info.value.details()

        with pytest.raises(grpc.RpcError) as info:
            stub.GetChallenge(nodes_pb2.GetChallengeRequest(address="0x123"))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        with pytest.raises(grpc.RpcError) as info:
            stub.Heartbeat(
                nodes_pb2.HeartbeatRequest(node_id=honest.address.lower(), session_token="x")
            )
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with cluster.client() as client:
        assert honest.address.lower() not in {n.node_id for n in client.nodes()}


def test_a_node_of_release_0_1_is_told_to_upgrade(cluster: LocalCluster) -> None:
    """A 0.1 node names no workloads: it could not run a 0.2 task, so it is refused with a
    status it treats as final, and a message that says what to do."""
    account = Account.create()
    channel, stub = _node_stub(cluster)
    with channel:
        challenge = stub.GetChallenge(nodes_pb2.GetChallengeRequest(address=account.address))
        signature = Account.sign_message(
            encode_defunct(text=challenge.message), account.key
        ).signature
        with pytest.raises(grpc.RpcError) as info:
            stub.Register(
                nodes_pb2.RegisterRequest(
                    address=account.address,
                    nonce=challenge.nonce,
                    signature=bytes(signature),
                    max_inflight_shards=1,
                    version="0.1.0",
                )
            )
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "names no workloads" in info.value.details()
        assert "upgrade the node" in info.value.details()


def test_a_result_for_a_shard_the_node_does_not_hold(cluster: LocalCluster) -> None:
    account = Account.create()
    channel, stub = _node_stub(cluster)
    with channel:
        reg = _register(stub, account, account.address)
        hello = nodes_pb2.LeaseRequest(
            hello=nodes_pb2.LeaseHello(node_id=reg.node_id, session_token=reg.session_token)
        )
        forged = nodes_pb2.LeaseRequest(
            result=nodes_pb2.ShardResult(shard_id="someone-elses-shard", output=b"\0")
        )
        call = stub.Lease(iter([hello, forged]))
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "does not hold shard 'someone-elses-shard'" in info.value.details()

        call = stub.Lease(iter([forged]))
        with pytest.raises(grpc.RpcError) as info:
            list(call)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "must open with a hello" in info.value.details()

        stale = nodes_pb2.LeaseRequest(
            hello=nodes_pb2.LeaseHello(node_id=reg.node_id, session_token="wrong")
        )
        with pytest.raises(grpc.RpcError) as info:
            list(stub.Lease(iter([stale])))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_and_reflection(cluster: LocalCluster) -> None:
    with cluster.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "tokenweave.v1.JobService", "tokenweave.v1.NodeService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
            assert status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {
            "tokenweave.v1.JobService",
            "tokenweave.v1.NodeService",
            "grpc.health.v1.Health",
        } <= names
