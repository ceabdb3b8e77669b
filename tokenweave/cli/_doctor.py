"""`tokenweave doctor`: what an operator needs, checked, each line OK or what to do.

Python, ONNX Runtime and its providers against the machine's GPUs, the prepared models and
their hashes, disk space for dataset blocks, the coordinator (it answers, how fast, its chain).
Exit status 0 when nothing failed (warnings allowed), 1 otherwise.
"""

from __future__ import annotations

import json
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tokenweave.errors import TokenweaveError

#: Free bytes for dataset blocks under which the disk check warns.
LOW_DISK_BYTES = 10 * 2**30

out = Console()


@dataclass(frozen=True, slots=True)
class Check:
    what: str
    #: "ok", "warn" or "fail".
    status: str
    detail: str
    #: What to do about it (empty when nothing is to be done).
    fix: str = ""


def _python() -> Check:
    version = platform.python_version()
    if platform.python_version_tuple()[:2] == ("3", "11"):
        return Check("python", "ok", version)
    return Check("python", "fail", version, "tokenweave runs on Python 3.11")


def _runtime() -> list[Check]:
    from tokenweave.node._hardware import detect_hardware

    try:
        import onnxruntime as ort
    except ImportError:
        return [
            Check(
                "onnx runtime", "fail", "not installed", "pip install 'tokenweave[cpu]' (or [gpu])"
            )
        ]
    providers = ort.get_available_providers()
    checks = [Check("onnx runtime", "ok", f"{ort.__version__}: {', '.join(providers)}")]
    gpus = [str(g) for g in detect_hardware().get("gpus", []) or []]  # type: ignore[attr-defined]
    if not gpus:
        checks.append(Check("gpus", "ok", "none found: the node runs on the CPU"))
    elif "CUDAExecutionProvider" in providers:
        checks.append(Check("gpus", "ok", f"{', '.join(gpus)}; the CUDA provider is installed"))
    else:
        checks.append(
            Check(
                "gpus",
                "warn",
                f"{', '.join(gpus)}, but this ONNX Runtime has no CUDA provider: the node would "
                "run on the CPU",
                "install the CUDA build: make setup-gpu, or pip install 'tokenweave[gpu]' "
                "in place of [cpu]",
            )
        )
    return checks


def _models(cache: Path) -> list[Check]:
    from tokenweave.cli._models_cmd import model_rows
    from tokenweave.models import known_models

    checks = []
    for name in known_models():
        rows = model_rows(name, cache)
        if all(r["prepared"] for r in rows):
            hashes = ", ".join(f"{r['name']} sha256 {str(r['sha256'])[:12]}…" for r in rows)
            checks.append(Check(f"model {name}", "ok", hashes))
        else:
            checks.append(
                Check(
                    f"model {name}",
                    "warn",
                    f"not prepared in {cache}",
                    f"tokenweave models prepare {name}",
                )
            )
    return checks


def _disk(data_dir: Path) -> Check:
    where = data_dir if data_dir.exists() else data_dir.resolve().parent
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    detail = f"{free / 2**30:,.1f} GiB free at {where.resolve()}"
    if free < LOW_DISK_BYTES:
        return Check(
            "disk", "warn", detail, "dataset blocks need room: free space or --block-quota-bytes"
        )
    return Check("disk", "ok", detail)


def _coordinator(address: str, api_key: str | None, tls_ca: Path | None) -> list[Check]:
    from tokenweave.cli._app import explain
    from tokenweave.client import Client

    began = time.monotonic()
    try:
        with Client(address, api_key=api_key, tls_ca=tls_ca, timeout=10) as client:
            nodes = client.nodes()
            answered = (time.monotonic() - began) * 1000
            checks = [
                Check(
                    "coordinator",
                    "ok",
                    f"{address} answered in {answered:.0f} ms; "
                    f"{sum(n.online for n in nodes)} nodes online of {len(nodes)}",
                )
            ]
            try:
                _, chain = client.epochs()
                checks.append(
                    Check(
                        "chain",
                        "ok",
                        f"chain {chain.chain_id} ({chain.endpoint}), "
                        f"distributor {chain.distributor}",
                    )
                )
            except TokenweaveError as exc:
                checks.append(Check("chain", "warn", explain(exc, address)))
            return checks
    except TokenweaveError as exc:
        return [Check("coordinator", "fail", explain(exc, address), "--coordinator HOST:PORT")]


def run(
    address: str,
    api_key: str | None,
    tls_ca: Path | None,
    data_dir: Path,
    cache: Path,
    as_json: bool,
) -> int:
    checks = [
        _python(),
        *_runtime(),
        *_models(cache),
        _disk(data_dir),
        *_coordinator(address, api_key, tls_ca),
        Check(
            "clock",
            "warn",
            "not checked: the coordinator publishes no time to compare with",
            "keep the clock synchronised (NTP): epochs close by it",
        ),
    ]
    if as_json:
        json.dump([asdict(c) for c in checks], sys.stdout)
        sys.stdout.write("\n")
    else:
        mark = {"ok": "[green]OK[/]", "warn": "[yellow]WARN[/]", "fail": "[red]FAIL[/]"}
        table = Table("", "check", "found", "to do")
        for c in checks:
            table.add_row(mark[c.status], c.what, c.detail, c.fix)
        out.print(table)
    return 1 if any(c.status == "fail" for c in checks) else 0
