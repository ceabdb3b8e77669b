"""What the node reports about its machine."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

import onnxruntime
import psutil


def _gpus() -> list[dict[str, object]]:
    """NVIDIA GPUs from nvidia-smi, if it is installed; an empty list otherwise."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    for fields in ("name,memory.total,compute_cap", "name,memory.total"):  # older drivers: 2
        try:
            out = subprocess.run(
                [smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        return parse_gpus(out)
    return []


def parse_gpus(out: str) -> list[dict[str, object]]:
    """nvidia-smi's "name, memory MiB[, compute capability]" lines."""
    gpus: list[dict[str, object]] = []
    for line in out.strip().splitlines():
        name, mib, capability = [*(f.strip() for f in line.split(",")), "", ""][:3]
        try:
            memory = int(float(mib)) * 1024 * 1024
        except ValueError:
            continue  # not a line of the query's shape
        gpus.append(
            {"name": name.strip(), "memory_bytes": memory, "compute_capability": capability.strip()}
        )
    return gpus


def detect_hardware() -> dict[str, object]:
    return {
        "cpu_cores": os.cpu_count() or 1,
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": _gpus(),
        "providers": list(onnxruntime.get_available_providers()),
        "platform": f"{platform.system()} {platform.machine()} python {platform.python_version()}",
    }
