"""A coordinator whose PostgreSQL goes away mid-job: calls are UNAVAILABLE (which clients retry)
while it is gone, and the job finishes once it is back, with one ledger row a shard.

The database is reached through a TCP proxy in this process that the test cuts: every
connection reset and new ones refused, as a server restart looks from the coordinator. Runs
with the coordinators on PostgreSQL (`make test-postgres`); SQLite is a file, it does not go
away."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import pytest

from tokenweave.errors import UnavailableError
from tokenweave.models import PreparedModel

from .conftest import TEST_DB, ClusterFactory, direct_embeddings, query, wait_until
from .test_resilience import SMALL_SHARDS
from .test_resilience import _text as _long_text

pytestmark = pytest.mark.skipif(not TEST_DB, reason="the coordinator on PostgreSQL only")


class Proxy:
    """127.0.0.1:<port> → `target`, byte for byte, until `cut()`; `restore()` listens again on
    the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener = self._listen(0)
        self.port = self._listener.getsockname()[1]

    def _listen(self, port: int) -> socket.socket:
        listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return listener

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy `source` to `sink` until either end goes; then this pump closes its source
        (the other pump closes the other socket)."""
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._sockets.discard(source)
        source.close()

    def cut(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        with self._lock:
            connections = list(self._sockets)
        for s in connections:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        wait_until("the proxy's connections are closed", lambda: not self._sockets, 10)

    def restore(self) -> None:
        self._listener = self._listen(self.port)


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    target = urlsplit(TEST_DB)
    proxy = Proxy((target.hostname or "127.0.0.1", target.port or 5432))
    yield proxy
    proxy.cut()


@pytest.mark.timeout(90)  # the job takes 10-20 s; a stuck one fails here, not at 300 s
@pytest.mark.xfail(
    strict=False,
    reason="known, #14: under load about 1 run in 5 keeps one shard held in memory by a run "
    "that the outage cut short (reconcile does not see it), and the job waits for it",
)
def test_a_database_outage_mid_job_is_unavailable_then_survived(
    cluster_factory: ClusterFactory, proxy: Proxy, prepared: PreparedModel
) -> None:
    cluster = cluster_factory(coordinator_args=SMALL_SHARDS)
    args = list(cluster.coordinator_args)
    at = args.index("--db") + 1
    direct = urlsplit(args[at])
    args[at] = direct._replace(netloc=f"{direct.username}@127.0.0.1:{proxy.port}").geturl()
    cluster.coordinator_args = tuple(args)
    cluster.start(2)
    text = _long_text()
    with cluster.client() as client:
        job = client.embed([text], window=256, overlap=32)
        wait_until("a shard is done", lambda: job.refresh().shards_done >= 1, 60)
        proxy.cut()
        try:
            with pytest.raises(UnavailableError, match="cannot reach its database"):
                job.refresh()
        finally:
            proxy.restore()
        result = job.result()
    ((_, windows, embedding),) = direct_embeddings(prepared, [text], 256, 32)
    np.testing.assert_allclose(result.documents[0].window_embeddings, windows, atol=1e-5)
    np.testing.assert_allclose(result.documents[0].embedding, embedding, atol=1e-5)
    rows = query(cluster, "SELECT shard_id FROM ledger WHERE job_id = ? AND NOT withheld", job.id)
    shards = [row[0] for row in rows]
    assert len(shards) == len(set(shards)) == result.job.shards_total
