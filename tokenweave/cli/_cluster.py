"""LocalCluster: a coordinator and N nodes as real processes on loopback.

Used by `tokenweave demo`, `tokenweave testnet`, the integration tests and the benchmarks. Every
process writes its log to `<root>/logs/`; `stop()` sends SIGTERM (each process shuts down cleanly)
and SIGKILL only past the timeout.

The cluster talks TLS: it makes a local CA in `<root>/tls` and a certificate for the
coordinator, and its nodes and clients trust that CA. Its clients call with the admin API key the
coordinator writes to `<root>/coordinator/admin.key` (`client()`, `client_env()`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import grpc

from tokenweave.client import Client
from tokenweave.errors import TokenweaveError, UnavailableError


@dataclass
class ManagedProcess:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]
    stopped: bool = False
    #: A node's data dir (its key and blocks): restart it there to bring the same node back.
    data_dir: Path | None = None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then SIGKILL past `timeout`; returns the exit code."""
        self.stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no clean shutdown (crash tests)."""
        self.stopped = True
        self.process.kill()
        self.process.wait()

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


@dataclass
class LocalCluster:
    root: Path
    model_cache: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    coordinator_args: tuple[str, ...] = ()
    node_args: tuple[str, ...] = ()
    coordinator: ManagedProcess | None = None
    nodes: list[ManagedProcess] = field(default_factory=list)
    address: str = ""
    #: Start processes in their own sessions, so that they outlive this one (`testnet up`).
    detached: bool = False
    #: Serve TLS with a local CA (plaintext otherwise: the coordinator allows it on loopback).
    tls: bool = True
    #: The admin API key of the coordinator, once it has started.
    api_key: str = ""
    #: The OpenAI API's base URL (with "--http-listen" in `coordinator_args`), once started.
    http_url: str | None = None

    @property
    def ca(self) -> Path | None:
        """The CA the coordinator's certificate is signed by (None without TLS)."""
        return self.root / "tls" / "ca.pem" if self.tls else None

    def client_env(self) -> dict[str, str]:
        """Environment for a `tokenweave` command that talks to this cluster."""
        env = {"TOKENWEAVE_COORDINATOR": self.address, "TOKENWEAVE_API_KEY": self.api_key}
        if self.ca is not None:
            env["TOKENWEAVE_TLS_CA"] = str(self.ca)
        return env

    def _spawn(self, name: str, args: list[str], module: str = "tokenweave.cli") -> ManagedProcess:
        logs = self.root / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        log = log_path.open("ab")
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        if self.ca is not None:  # nodes read it as their --tls-ca
            env["TOKENWEAVE_TLS_CA"] = str(self.ca)
        if self.model_cache is not None:
            env["TOKENWEAVE_MODEL_CACHE"] = str(self.model_cache)
        process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=self.detached,
        )
        return ManagedProcess(name, process, log_path, log)

    def start_coordinator(self, timeout: float = 120.0) -> str:
        """Start the coordinator, or restart it on the same data dir and port (so that nodes and
        clients find it again); returns its address."""
        if self.coordinator is not None:
            self.coordinator.stop()
        data_dir = self.root / "coordinator"
        address_file = data_dir / "address"
        address_file.unlink(missing_ok=True)
        (data_dir / "http_address").unlink(missing_ok=True)
        tls: list[str] = []
        if self.tls:
            from tokenweave._tls import LocalCA

            files = LocalCA(self.root / "tls").issue("coordinator")
            tls = ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
        self.coordinator = self._spawn(
            "coordinator",
            [
                "coordinator",
                "--listen",
                self.address or "127.0.0.1:0",
                "--data-dir",
                str(data_dir),
                *tls,
                *self.coordinator_args,
            ],
        )
        deadline = time.monotonic() + timeout
        while not address_file.exists():
            if self.coordinator.process.poll() is not None:
                raise RuntimeError(f"coordinator exited:\n{self.coordinator.tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"coordinator did not start in {timeout} s:\n{self.coordinator.tail()}"
                )
            time.sleep(0.05)
        self.address = address_file.read_text().strip()
        self.api_key = (data_dir / "admin.key").read_text().strip()
        http_file = data_dir / "http_address"  # written after `address`, with --http-listen
        self.http_url = http_file.read_text().strip() if http_file.exists() else None
        return self.address

    def add_node(
        self, *extra: str, data_dir: Path | None = None, module: str | None = None
    ) -> ManagedProcess:
        """Start a node; `data_dir` of an earlier node restarts that node (same key). `module`
        runs another entry point with the node's arguments (tests use a dishonest node)."""
        index = len(self.nodes)
        data_dir = data_dir or self.root / f"node{index}"
        node = self._spawn(
            f"node{index}",
            [
                *([] if module else ["node"]),
                "--coordinator",
                self.address,
                "--data-dir",
                str(data_dir),
                *self.node_args,
                *extra,
            ],
            module or "tokenweave.cli",
        )
        node.data_dir = data_dir
        self.nodes.append(node)
        return node

    def wait_for_nodes(self, count: int, timeout: float = 180.0) -> None:
        """Block until `count` nodes are online at the coordinator."""
        deadline = time.monotonic() + timeout
        with self.client(timeout=5) as client:
            while True:
                for node in self.nodes:
                    if not node.stopped and node.process.poll() is not None:
                        raise RuntimeError(f"{node.name} exited:\n{node.tail()}")
                try:
                    if sum(n.online for n in client.nodes()) >= count:
                        return
                except UnavailableError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{count} nodes did not come online in {timeout} s")
                time.sleep(0.1)

    def start(self, nodes: int) -> LocalCluster:
        self.start_coordinator()
        for _ in range(nodes):
            self.add_node()
        self.wait_for_nodes(nodes)
        return self

    def channel(self, api_key: str | None = None, anonymous: bool = False) -> grpc.Channel:
        """A raw gRPC channel to the coordinator (TLS, the admin key unless given another, or
        none when `anonymous`)."""
        from tokenweave.client._channel import open_channel

        key = None if anonymous else api_key or self.api_key
        return open_channel(self.address, api_key=key, tls_ca=self.ca)

    def client(self, timeout: float = 60.0, api_key: str | None = None) -> Client:
        """A client of the coordinator, with the admin key unless given another."""
        return Client(
            self.address, timeout=timeout, api_key=api_key or self.api_key, tls_ca=self.ca
        )

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM nodes, then the coordinator; returns each process's exit code."""
        codes = {node.name: node.stop(timeout) for node in self.nodes}
        if self.coordinator is not None:
            codes["coordinator"] = self.coordinator.stop(timeout)
        return codes

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(TokenweaveError, OSError):
            self.stop()
