"""`tokenweave testnet up|down`: anvil, the reward contracts, a coordinator and N nodes on loopback.

`up` starts every process in its own session (they outlive the command), waits until the nodes are
online, and writes `<dir>/testnet.json` (addresses, process ids, the deployment); `down` stops them
all, nodes first, with SIGTERM (SIGKILL only past a timeout).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from tokenweave.cli._cluster import LocalCluster
from tokenweave.contracts import ANVIL_DEV_KEYS, Anvil
from tokenweave.errors import FailedPreconditionError

#: What the testnet's coordinator serves and its nodes run: embeddings and text generation.
SERVED = "all-minilm-l6-v2,smollm2-135m-instruct"

console = Console(stderr=True)
STATE_FILE = "testnet.json"


def up(root: Path, nodes: int, model_cache: Path | None, block_time: float) -> int:
    state_path = root / STATE_FILE
    if state_path.exists():
        raise FailedPreconditionError(
            f"{state_path} exists: a testnet may be running; `tokenweave testnet down --dir {root}`"
        )
    root.mkdir(parents=True, exist_ok=True)
    with console.status("starting anvil"):
        anvil = Anvil(block_time=block_time, detached=True)
    cluster = LocalCluster(
        root=root,
        model_cache=model_cache,
        detached=True,
        coordinator_args=(
            "--chain",
            anvil.url,
            "--chain-key",
            "0x" + ANVIL_DEV_KEYS[0].hex(),
            "--poster-key",
            "0x" + ANVIL_DEV_KEYS[1].hex(),
            "--confirmations",
            "2",
            "--faucet-wei",
            str(10**16),
            "--http-listen",
            "127.0.0.1:0",
            "--models",
            SERVED,
        ),
        node_args=("--models", SERVED),
    )
    try:
        with console.status(f"deploying the contracts, starting a coordinator and {nodes} nodes"):
            cluster.start(nodes)
    except BaseException:
        cluster.stop(timeout=10)
        anvil.stop()
        raise
    deployment = json.loads((root / "coordinator" / "deployment.json").read_text())
    assert cluster.coordinator is not None
    state: dict[str, Any] = {
        "coordinator": cluster.address,
        "api_key_file": str(root / "coordinator" / "admin.key"),
        "tls_ca": str(cluster.ca),
        "openai_base_url": f"{cluster.http_url}/v1",
        "chain": anvil.url,
        "deployment": deployment,
        "logs": str(root / "logs"),
        "pids": {
            "anvil": anvil.process.pid,
            "coordinator": cluster.coordinator.process.pid,
            **{n.name: n.process.pid for n in cluster.nodes},
        },
        "node_data_dirs": [str(root / f"node{i}") for i in range(nodes)],
    }
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_path)
    exports = "".join(f"  export {k}={v}\n" for k, v in cluster.client_env().items())
    console.print(
        f"testnet up: chain {anvil.url}, coordinator {cluster.address} (TLS), {nodes} nodes; "
        f"distributor {deployment['distributor']}; OpenAI API at {cluster.http_url}/v1\n{exports}"
        f"  state in {state_path}, logs in {root / 'logs'}; stop with "
        f"`tokenweave testnet down --dir {root}`",
        highlight=False,
    )
    print(json.dumps(state))
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def down(root: Path, timeout: float = 60.0) -> int:
    state_path = root / STATE_FILE
    if not state_path.exists():
        raise FailedPreconditionError(f"no testnet state in {state_path}")
    pids: dict[str, int] = json.loads(state_path.read_text())["pids"]
    order = [n for n in pids if n.startswith("node")] + ["coordinator", "anvil"]
    for name in order:
        pid = pids[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        if _alive(pid):
            console.print(f"{name} (pid {pid}) ignored SIGTERM for {timeout:.0f} s; killing it")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        console.print(f"stopped {name}")
    state_path.unlink()
    console.print("testnet down")
    return 0
