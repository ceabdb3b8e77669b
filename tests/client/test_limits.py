"""What one peer may hold open on a real coordinator: connections, streams, message sizes, the
port and the data dir. Every limit here is a count or a size, never a speed."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import grpc
import pytest

from tokenweave.client import Client
from tokenweave.client._channel import open_channel
from tokenweave.coordinator import CoordinatorConfig, CoordinatorServer
from tokenweave.coordinator._limits import ServiceLimits, WatchStreams
from tokenweave.coordinator._server import ListenError
from tokenweave.errors import ResourceExhaustedError, UnavailableError
from tokenweave.v1 import jobs_pb2, jobs_pb2_grpc

TEXT = "Limits are counts and sizes, never speeds. " * 20


class Running:
    """A coordinator on its own asyncio loop in a background thread."""

    def __init__(self, config: CoordinatorConfig, limits: ServiceLimits | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        try:
            self.server = self.run(CoordinatorServer.create(config, limits))
        except BaseException:
            self.close_loop()
            raise

    def run(self, coro):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    @property
    def address(self) -> str:
        return str(self.server.address)

    @property
    def api_key(self) -> str:
        """The coordinator's admin key."""
        return (self.server.config.data_dir / "admin.key").read_text().strip()

    def close(self) -> None:
        try:
            self.run(self.server.shutdown())
        finally:
            self.close_loop()

    def close_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@contextmanager
def admin_key_env(key: str) -> Iterator[str]:
    """TOKENWEAVE_API_KEY set to `key` for the block: SDK clients made meanwhile call with it."""
    before = os.environ.get("TOKENWEAVE_API_KEY")
    os.environ["TOKENWEAVE_API_KEY"] = key
    try:
        yield key
    finally:
        if before is None:
            os.environ.pop("TOKENWEAVE_API_KEY", None)
        else:
            os.environ["TOKENWEAVE_API_KEY"] = before


@contextmanager
def coordinator(
    data_dir: Path,
    model_cache: Path,
    limits: ServiceLimits | None = None,
    listen: str = "",
    rate_limit: float = CoordinatorConfig.rate_limit,
) -> Iterator[Running]:
    config = CoordinatorConfig(
        listen=listen or "127.0.0.1:0",
        data_dir=data_dir,
        model_cache=model_cache,
        shutdown_grace_s=1.0,
        rate_limit=rate_limit,
        rate_burst=max(CoordinatorConfig.rate_burst, rate_limit),
    )
    running = Running(config, limits)
    try:
        yield running
    finally:
        running.close()


TIGHT = ServiceLimits(
    max_connections=6,
    max_watch_streams=3,
    max_watch_streams_per_peer=2,
    max_receive_message_bytes=1024 * 1024,
)


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Running]:
    with coordinator(tmp_path_factory.mktemp("tight"), model_cache, TIGHT) as running:
        yield running


def _stub(running: Running) -> tuple[grpc.Channel, jobs_pb2_grpc.JobServiceStub]:
    # A channel of its own: grpc would otherwise share one connection between channels.
    channel = open_channel(
        running.address,
        api_key=running.api_key,
        tls_ca=None,
        options=[("grpc.use_local_subchannel_pool", 1)],
    )
    return channel, jobs_pb2_grpc.JobServiceStub(channel)


def test_watch_streams_are_capped_per_client_address(tight: Running) -> None:
    with Client(tight.address, timeout=30.0, api_key=tight.api_key) as client:
        job_id = client.embed([TEXT]).id
    channel, stub = _stub(tight)
    with channel:
        request = jobs_pb2.WatchJobRequest(job_id=job_id)
        open_ = [stub.WatchJob(request, timeout=60) for _ in range(2)]
        for stream in open_:
            assert next(stream).job.job_id == job_id  # the stream is established
        with pytest.raises(grpc.RpcError) as refused:
            next(stub.WatchJob(request, timeout=60))
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_watch_streams_per_peer" in (refused.value.details() or "")
        assert "2 per client address" in (refused.value.details() or "")

        open_[0].cancel()
        # The server sees the cancel on its own time: the slot comes back, without a timing bound.
        while True:
            try:
                event = next(stub.WatchJob(request, timeout=60))
            except grpc.RpcError as exc:
                if exc.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                continue
            assert event.job.job_id == job_id
            break
        open_[1].cancel()


def test_the_sdk_polls_when_no_watch_stream_is_left(tight: Running) -> None:
    with Client(tight.address, timeout=30.0, api_key=tight.api_key) as client:
        held = client.embed([TEXT])
        job = client.embed([TEXT])
        job.cancel()
        channel, stub = _stub(tight)
        with channel:
            request = jobs_pb2.WatchJobRequest(job_id=held.id)
            streams = [stub.WatchJob(request, timeout=60) for _ in range(2)]
            for stream in streams:
                next(stream)
            seen = list(job.watch())
            for stream in streams:
                stream.cancel()
    assert seen[-1].job_id == job.id
    assert seen[-1].state.finished


def test_watch_streams_are_capped_in_all() -> None:
    streams = WatchStreams(total=3, per_peer=2)
    with ExitStack() as stack:
        stack.enter_context(streams.open("ipv4:10.0.0.1:5000"))
        stack.enter_context(streams.open("ipv4:10.0.0.1:5001"))
        with pytest.raises(ResourceExhaustedError, match="2 per client address"):
            stack.enter_context(streams.open("ipv4:10.0.0.1:5002"))
        stack.enter_context(streams.open("ipv4:10.0.0.2:5000"))
        with pytest.raises(ResourceExhaustedError, match=r"limit of 3 \(max_watch_streams\)"):
            stack.enter_context(streams.open("ipv6:[::1]:5000"))
        assert len(streams) == 3
    assert len(streams) == 0
    with streams.open("ipv4:10.0.0.1:5000"):
        assert len(streams) == 1


def test_a_message_over_the_cap_is_refused(tight: Running) -> None:
    channel, stub = _stub(tight)
    with channel, pytest.raises(grpc.RpcError) as refused:
        stub.GetJob(jobs_pb2.GetJobRequest(job_id="x" * (2 * 1024 * 1024)), timeout=30)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_the_default_message_cap_is_64_mib() -> None:
    options = dict(ServiceLimits().server_options())
    assert options["grpc.max_receive_message_length"] == 64 * 1024 * 1024
    assert options["grpc.so_reuseport"] == 0
    assert options["grpc.max_concurrent_streams"] == 100
    assert options["grpc.max_connection_idle_ms"] == 300_000
    assert options["grpc.keepalive_time_ms"] == 60_000


def test_streams_past_the_cap_on_one_connection_wait(tmp_path: Path, model_cache: Path) -> None:
    """One connection carries at most `max_concurrent_streams` calls; the next waits for one to
    end (the client queues it) instead of piling onto the server."""
    limits = ServiceLimits(max_concurrent_streams=2)
    with coordinator(tmp_path / "c", model_cache, limits) as running:
        with Client(running.address, timeout=30.0, api_key=running.api_key) as client:
            job_id = client.embed([TEXT]).id
        channel, stub = _stub(running)
        with channel:
            request = jobs_pb2.WatchJobRequest(job_id=job_id)
            streams = [stub.WatchJob(request, timeout=120) for _ in range(2)]
            for stream in streams:
                next(stream)
            waiting = stub.GetJob.future(jobs_pb2.GetJobRequest(job_id=job_id), timeout=120)
            # Never answered while both streams are open, however long it is given:
            with pytest.raises(grpc.FutureTimeoutError):
                waiting.result(timeout=2)
            streams[0].cancel()
            assert waiting.result().job.job_id == job_id
            streams[1].cancel()


def test_connections_are_capped_by_the_file_descriptors() -> None:
    """With 1,024 descriptors the default cap of 512 connections leaves room for everything else;
    with fewer, the cap shrinks to half of them."""
    code = (
        "import resource\n"
        "from tokenweave.coordinator import CoordinatorConfig\n"
        "from tokenweave.coordinator._limits import ServiceLimits\n"
        "from tokenweave.coordinator._limits import server_options\n"
        "hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
        "for soft in (1024, 200):\n"
        "    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))\n"
        "    options = dict(server_options(CoordinatorConfig(), ServiceLimits()))\n"
        "    print('cap', options['grpc.max_allowed_incoming_connections'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=240
    )
    assert out.returncode == 0, out.stderr[-2000:]
    caps = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("cap ")]
    assert caps == ["512", "100"], out.stdout[-2000:] + out.stderr[-2000:]


def _raw_connections(address: str, count: int) -> list[socket.socket]:
    host, port = address.rsplit(":", 1)
    return [socket.create_connection((host, int(port)), timeout=30) for _ in range(count)]


def test_connections_past_the_cap_are_closed_and_the_slots_come_back(tight: Running) -> None:
    """1,100 idle sockets used to exhaust the file descriptors; now the cap closes the excess."""
    raw = _raw_connections(tight.address, TIGHT.max_connections)
    try:
        extra = _raw_connections(tight.address, 1)[0]
        with extra:
            assert extra.recv(4096) == b"", "a connection past the cap is closed unanswered"
    finally:
        for s in raw:
            s.close()
    # The server notices the closes on its own time (a busy machine: seconds); then clients
    # get in again.
    deadline = time.monotonic() + 60
    while True:
        try:
            with Client(tight.address, timeout=60.0, api_key=tight.api_key) as client:
                assert client.nodes() == []
            return
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_silent_connection_is_closed(tmp_path: Path, model_cache: Path) -> None:
    """A socket that never speaks HTTP/2 is dropped after the handshake timeout."""
    limits = ServiceLimits(handshake_timeout_s=0.5)
    with coordinator(tmp_path / "c", model_cache, limits) as running:
        (silent,) = _raw_connections(running.address, 1)
        with silent:
            while silent.recv(4096):  # the server's own HTTP/2 settings, then the close
                pass


def test_an_idle_connection_is_closed(tmp_path: Path, model_cache: Path) -> None:
    limits = ServiceLimits(max_connection_idle_s=0.5)
    with coordinator(tmp_path / "c", model_cache, limits) as running:
        channel, stub = _stub(running)
        states: list[grpc.ChannelConnectivity] = []
        idle = threading.Event()

        def seen(state: grpc.ChannelConnectivity) -> None:
            states.append(state)
            if grpc.ChannelConnectivity.READY in states and state in (
                grpc.ChannelConnectivity.IDLE,
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
            ):
                idle.set()

        with channel:
            channel.subscribe(seen)
            stub.ListJobs(jobs_pb2.ListJobsRequest(), timeout=30)
            assert idle.wait(60), f"the server never closed the idle connection: {states}"
            channel.unsubscribe(seen)


def test_a_second_coordinator_on_the_same_port_fails(tight: Running, tmp_path: Path) -> None:
    config = tight.server.config
    with (
        pytest.raises(ListenError, match=f"could not listen on {tight.address}"),
        coordinator(tmp_path / "second", config.model_cache, listen=tight.address),
    ):
        pass
