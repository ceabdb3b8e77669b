"""The SDK against the real coordinator, in process and without nodes.

With no node attached nothing runs: every job stays QUEUED until it is cancelled. That is enough
to check that what the SDK sends is what the coordinator accepts, and that the coordinator's
refusals come back as the right `tokenweave.errors` classes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.test_limits import admin_key_env
from tokenweave.client import Client, EmbedJob, JobStatus
from tokenweave.coordinator import CoordinatorConfig, CoordinatorServer
from tokenweave.errors import FailedPreconditionError, InvalidArgumentError, NotFoundError

TEXT = "Long documents are cut into overlapping windows before they are embedded. " * 20


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[str]:
    """A coordinator on a free port, its asyncio loop in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="coordinator-loop", daemon=True)
    thread.start()
    config = CoordinatorConfig(
        listen="127.0.0.1:0",
        data_dir=tmp_path_factory.mktemp("coordinator"),
        model_cache=model_cache,
        shutdown_grace_s=1.0,
    )
    try:
        server = asyncio.run_coroutine_threadsafe(CoordinatorServer.create(config), loop).result(
            timeout=120
        )
        try:
            key = (config.data_dir / "admin.key").read_text().strip()
            with admin_key_env(key):
                yield server.address
        finally:
            asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(timeout=60)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def client(address: str) -> Iterator[Client]:
    with Client(address, timeout=30.0) as c:
        yield c


def test_a_submitted_job_is_queued_and_can_be_read_back(client: Client) -> None:
    job = client.embed([TEXT, ("short.txt", "A short one.")])

    assert isinstance(job, EmbedJob)
    assert job.info.state is JobStatus.QUEUED
    assert job.info.workload == "embed"
    assert job.info.model == "all-minilm-l6-v2"
    assert job.info.documents == 2
    assert job.info.tokens > 0
    assert job.info.windows >= 2
    assert job.info.shards_total >= 1
    assert job.info.shards_done == 0
    assert job.info.created_at is not None
    assert job.info.finished_at is None

    again = client.job(job.id)
    assert again.id == job.id
    assert again.info.state is JobStatus.QUEUED
    assert (again.info.documents, again.info.tokens) == (2, job.info.tokens)
    assert job.refresh().state is JobStatus.QUEUED

    listed = {j.job_id: j for j in client.jobs()}
    assert listed[job.id].status is JobStatus.QUEUED
    assert listed[job.id].windows == job.info.windows


def test_window_and_overlap_reach_the_job(client: Client) -> None:
    job = client.embed([TEXT], window=64, overlap=16)

    assert (job.info.window, job.info.overlap) == (64, 16)
    assert job.info.options == {"window": "64", "overlap": "16"}
    # Defaults are filled in by the coordinator.
    default = client.embed([TEXT])
    assert default.info.window > 64
    assert default.info.overlap == 32
    assert default.info.windows < job.info.windows


def test_submit_with_options_is_the_same_as_embed(client: Client) -> None:
    job = client.submit("embed", [TEXT], options={"window": 64, "overlap": 16})

    assert job.info.workload == "embed"
    assert (job.info.window, job.info.overlap) == (64, 16)
    assert job.info.windows == client.embed([TEXT], window=64, overlap=16).info.windows


def test_cancel_a_queued_job_then_again(client: Client) -> None:
    job = client.embed([TEXT])

    cancelled = client.cancel(job.id)

    assert cancelled.job_id == job.id
    assert cancelled.state is JobStatus.CANCELLED
    assert cancelled.finished_at is not None
    assert client.job(job.id).info.state is JobStatus.CANCELLED
    with pytest.raises(FailedPreconditionError, match=job.id):
        client.cancel(job.id)
    with pytest.raises(FailedPreconditionError, match=job.id):
        job.cancel()


def test_watch_and_result_of_a_cancelled_job(client: Client) -> None:
    job = client.embed([TEXT])
    job.cancel()

    seen = list(job.watch())

    assert seen
    assert seen[-1].state is JobStatus.CANCELLED
    with pytest.raises(FailedPreconditionError, match="CANCELLED"):
        job.result()


def test_results_of_an_unfinished_job_are_refused(client: Client) -> None:
    job = client.embed([TEXT])

    # outputs() would wait for the job to finish: ask for the results directly.
    with pytest.raises(FailedPreconditionError, match="QUEUED"):
        list(client._results(job.id))


def test_unknown_job(client: Client) -> None:
    with pytest.raises(NotFoundError, match="no-such-job"):
        client.job("no-such-job")
    with pytest.raises(NotFoundError, match="no-such-job"):
        client.cancel("no-such-job")


def test_unknown_model(client: Client) -> None:
    with pytest.raises(NotFoundError, match="no-such-model"):
        client.embed([TEXT], model="no-such-model")


def test_unknown_workload(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="no-such-workload"):
        client.submit("no-such-workload", [TEXT])


def test_overlap_not_below_window(client: Client) -> None:
    with pytest.raises(InvalidArgumentError, match="overlap=64 must be smaller than window=64"):
        client.embed([TEXT], window=64, overlap=64)
    with pytest.raises(InvalidArgumentError, match="overlap=64 must be smaller than window=64"):
        client.submit("embed", [TEXT], options={"window": 64, "overlap": 64})


def test_no_nodes(client: Client) -> None:
    assert client.nodes() == []


def test_options_are_bounded(client: Client) -> None:
    """A client fills the options map at will: too many, or too long, is refused with a short
    message (not one that echoes every key back)."""
    before = len(client.jobs())
    many = {f"key{i}": i for i in range(10_000)}
    with pytest.raises(InvalidArgumentError, match="10000 options; at most 32") as info:
        client.submit("embed", [TEXT], options=many)
    assert len(info.value.message) < 200
    with pytest.raises(InvalidArgumentError, match="too long"):
        client.submit("embed", [TEXT], options={"window": "1" * 5000})
    with pytest.raises(InvalidArgumentError, match="unknown option") as info:
        client.submit("embed", [TEXT], options={f"k{i}": 1 for i in range(30)})
    assert len(info.value.message) < 300
    assert len(client.jobs()) == before, "nothing recorded for a refused job"
