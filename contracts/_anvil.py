"""Anvil: a local EVM node (npm @foundry-rs/anvil) on 127.0.0.1, for the testnet and tests."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Anvil's well-known development keys for its default mnemonic ("test test ... junk").
ANVIL_DEV_KEYS = (
    bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"),
    bytes.fromhex("59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"),
    bytes.fromhex("5de4111afa1a4b94908f83103eb1d1706367c2e68ca870fc3fb9a804cdab365a"),
)


def anvil_binary() -> Path:
    """The anvil executable installed by `npm ci` in contracts/ (`make contracts`)."""
    for candidate in sorted((HERE / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil")):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"anvil is not installed under {HERE / 'node_modules'}; run `make contracts`"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Anvil:
    """`with Anvil() as anvil: anvil.url` — a fresh chain, stopped on exit."""

    def __init__(
        self, port: int | None = None, block_time: float | None = None, detached: bool = False
    ) -> None:
        self.port = port or _free_port()
        args = [str(anvil_binary()), "--host", "127.0.0.1", "--port", str(self.port), "--silent"]
        if block_time:
            args += ["--block-time", str(block_time)]
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=detached,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        self._wait()

    def _wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        request = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).encode()
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil exited with {self.process.returncode}")
            with contextlib.suppress(OSError):
                req = urllib.request.Request(
                    self.url, request, {"Content-Type": "application/json"}
                )
                with urllib.request.urlopen(req, timeout=1) as response:
                    if response.status == 200:
                        return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"anvil did not answer on {self.url} in {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Anvil:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
