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
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus: list[dict[str, object]] = []
    for line in out.strip().splitlines():
        name, _, mib = line.rpartition(",")
        if name:
            gpus.append({"name": name.strip(), "memory_bytes": int(float(mib)) * 1024 * 1024})
    return gpus


def detect_hardware() -> dict[str, object]:
    return {
        "cpu_cores": os.cpu_count() or 1,
        "memory_bytes": psutil.virtual_memory().total,
        "gpus": _gpus(),
        "providers": list(onnxruntime.get_available_providers()),
        "platform": f"{platform.system()} {platform.machine()} python {platform.python_version()}",
    }
