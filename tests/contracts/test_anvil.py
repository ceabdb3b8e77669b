"""Anvil starts on a port of its own, answers, and stops; a missing binary says what to run."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tokenweave.contracts import ANVIL_DEV_KEYS, Anvil, anvil_binary


def _chain_id(url: str) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(json.loads(response.read())["result"], 16)


def test_a_missing_binary_names_the_install_step(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make setup"):
        anvil_binary(tmp_path / "node_modules")


def test_two_anvils_get_their_own_ports_and_stop(anvil: Anvil) -> None:
    with Anvil() as other:
        assert other.port != anvil.port
        assert other.url == f"http://127.0.0.1:{other.port}"
        assert _chain_id(other.url) == _chain_id(anvil.url) == 31337
    assert other.process.returncode == 0
    other.stop()  # a second stop is harmless


def test_the_dev_keys_are_anvils_own(tmp_path: Path) -> None:
    """ANVIL_DEV_KEYS are the first keys anvil itself reports (funded, default mnemonic)."""
    try:
        binary = anvil_binary()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    config = tmp_path / "anvil.json"
    process = subprocess.Popen(
        [str(binary), "--host", "127.0.0.1", "--port", "0", "--silent", "--config-out", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not config.exists() or not config.read_text().endswith("}"):
            assert time.monotonic() < deadline, "anvil wrote no --config-out file"
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(10)
    keys = json.loads(config.read_text())["private_keys"]
    assert ["0x" + k.hex() for k in ANVIL_DEV_KEYS] == keys[: len(ANVIL_DEV_KEYS)]
