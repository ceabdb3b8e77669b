"""Anvil: a local EVM node (npm @foundry-rs/anvil) on 127.0.0.1, for the testnet and tests."""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent

#: Anvil's well-known development keys for its default mnemonic ("test test ... junk").
ANVIL_DEV_KEYS = (
    bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    bytes.fromhex("5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"),
)


def anvil_binary(node_modules: Path = HERE / "node_modules") -> Path:
    """The native anvil executable that npm installed in contracts/ (`make setup`).

    The platform package's binary, not `.bin/anvil`: that is a Node.js wrapper, and stopping the
    wrapper would not stop the node it spawned."""
    for candidate in sorted((node_modules / "@foundry-rs").glob("anvil-*/bin/anvil")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"anvil is not installed under {node_modules}; run `make setup` "
        "(or `npm install --prefix contracts`)"
    )


class Anvil:
    """`with Anvil() as anvil: anvil.url` — a fresh chain, stopped on exit.

    Without a `port`, anvil binds port 0 and the port the kernel gave it is read from the process's
    listening socket, so two chains never race for one port. `detached` puts anvil in its own
    session, so that it outlives this process (`tokenweave testnet up`)."""

    def __init__(
        self,
        port: int | None = None,
        block_time: float | None = None,
        detached: bool = False,
        timeout: float = 30.0,
    ) -> None:
        args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port or 0), "--silent"]
        if block_time:
            args += ["--block-time", str(block_time)]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=detached,
        )
        try:
            deadline = time.monotonic() + timeout
            self.port = port or self._bound_port(deadline)
            self.url = f"http://127.0.0.1:{self.port}"
            self._wait(deadline)
        except BaseException:
            self.stop()
            raise
        logger.info("anvil (pid %d) answers on %s", self.process.pid, self.url)

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            self._stderr.seek(0)
            said = self._stderr.read().decode(errors="replace").strip()
            raise RuntimeError(f"anvil exited with {self.process.returncode}: {said or '-'}")

    def _bound_port(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(psutil.NoSuchProcess):
                for conn in psutil.Process(self.process.pid).net_connections(kind="tcp"):
                    if conn.status == psutil.CONN_LISTEN:
                        return int(conn.laddr.port)
            time.sleep(0.02)
        raise TimeoutError("anvil did not open a port in time")

    def _wait(self, deadline: float) -> None:
        """Until anvil answers eth_chainId."""
        request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).encode()
        while time.monotonic() < deadline:
            self._check_alive()
            with contextlib.suppress(OSError):
                req = urllib.request.Request(
                    self.url, request, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=1) as response:
                    if response.status == 200:
                        return
            time.sleep(0.05)
        raise TimeoutError(f"anvil did not answer on {self.url} in time")

    def stop(self) -> None:
        """Terminate anvil and wait for it (kill after 10 s); safe to call twice."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            logger.info("anvil (pid %d) stopped", self.process.pid)
        self._stderr.close()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
