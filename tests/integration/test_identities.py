"""Clients with identities, over TLS, against a real coordinator process: a job belongs to its
submitter, admin operations need the admin key, keys can be revoked, and plaintext is refused
where it should be."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tokenweave.cli import LocalCluster
from tokenweave.client import Client
from tokenweave.errors import (
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc

from .conftest import ClusterFactory, random_file


@pytest.fixture(scope="module")
def cluster(module_cluster_factory: ClusterFactory) -> LocalCluster:
    return module_cluster_factory(nodes=1, coordinator_args=("--max-stored-bytes", "100000"))


def _cli(
    cluster: LocalCluster, *args: str, key: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **cluster.client_env()}
    if key is not None:
        env["TOKENWEAVE_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "tokenweave.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_a_job_belongs_to_its_submitter(cluster: LocalCluster) -> None:
    with cluster.client() as admin:
        alice_key = admin.create_key("alice", label="laptop")
        bob_key = admin.create_key("bob")
    with cluster.client(api_key=alice_key) as alice, cluster.client(api_key=bob_key) as bob:
        assert alice.whoami().client_id == "alice"
        job = alice.embed(["a document of alice's"])
        assert job.info.owner == "alice"
        assert [j.job_id for j in alice.jobs()] == [job.id]
        assert bob.jobs() == []
        for peek in (bob.job, bob.cancel):
            with pytest.raises(NotFoundError, match="no job with id"):
                peek(job.id)
        with pytest.raises(PermissionDeniedError, match="admin API key"):
            bob.jobs(all_clients=True)
        with pytest.raises(PermissionDeniedError):
            bob.close_epoch()
        with pytest.raises(PermissionDeniedError):
            bob.create_key("mallory", admin=True)
    with cluster.client() as admin:
        assert job.id in {j.job_id for j in admin.jobs(all_clients=True)}
        assert admin.job(job.id).info.owner == "alice"


def test_each_client_stores_datasets_within_its_quota(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    with cluster.client() as admin:
        erin_key, frank_key = admin.create_key("erin"), admin.create_key("frank")
    files = [random_file(tmp_path / f"f{i}.bin", 60_000, seed=i) for i in range(3)]
    with cluster.client(api_key=erin_key) as erin, cluster.client(api_key=frank_key) as frank:
        first = erin.put(files[0]).root
        with pytest.raises(ResourceExhaustedError, match="quota of 100,000"):
            erin.put(files[1])
        second = frank.put(files[2]).root  # frank has a quota of his own
        assert [d.root for d in erin.datasets()] == [first]
        assert [d.root for d in frank.datasets()] == [second]
    with cluster.client() as admin:
        assert {first, second} <= {d.root for d in admin.datasets()}


def test_a_revoked_key_is_refused_at_once(cluster: LocalCluster) -> None:
    with cluster.client() as admin:
        key = admin.create_key("carol")
        with cluster.client(api_key=key) as carol:
            assert carol.whoami().client_id == "carol"
            admin.revoke_key(key.split("_")[1])
            with pytest.raises(UnauthenticatedError, match="unknown or revoked"):
                carol.whoami()


def test_calls_without_a_key_or_without_tls_are_refused(cluster: LocalCluster) -> None:
    with Client(cluster.address, tls_ca=cluster.ca, api_key="") as nobody:
        with pytest.raises(UnauthenticatedError, match="needs an API key"):
            nobody.jobs()
        assert nobody.epochs() is not None, "rewards are public"
    plaintext = Client(cluster.address, api_key=cluster.api_key, tls_ca=None)
    with plaintext, pytest.raises(UnavailableError):
        plaintext.jobs()
    with cluster.channel(anonymous=True) as channel:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.ListJobs(jobs_pb2.ListJobsRequest())
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_the_key_commands(cluster: LocalCluster) -> None:
    made = _cli(cluster, "keys", "create", "dave", "--label", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("tw_")
    me = _cli(cluster, "whoami", key=key)
    assert me.returncode == 0, me.stderr
    assert me.stdout.startswith("dave")
    listed = _cli(cluster, "keys", "ls", "--client", "dave", "--json")
    assert '"label": "ci"' in listed.stdout
    refused = _cli(cluster, "keys", "ls", key=key)
    assert refused.returncode == 4  # refused
    assert "PERMISSION_DENIED" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_coordinator_will_not_serve_plaintext_off_loopback(tmp_path: object) -> None:
    proc = subprocess.run(
        [
            sys.executable, "-m", "tokenweave.cli", "coordinator",
            "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "plaintext is allowed on loopback only" in proc.stderr
