"""What a node reports of its GPUs, and which device its sessions run on."""

from __future__ import annotations

import pytest

from tokenweave.models import _session, default_providers
from tokenweave.node._hardware import parse_gpus


def test_nvidia_smi_lines_become_gpus() -> None:
    out = "NVIDIA H100 80GB HBM3, 81559, 9.0\nNVIDIA A10, 23028\nnot a gpu line\n"
    assert parse_gpus(out) == [
        {"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 81559 << 20, "compute_capability": "9.0"},
        {"name": "NVIDIA A10", "memory_bytes": 23028 << 20, "compute_capability": ""},
    ]


def test_the_gpu_asked_for_is_the_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
    monkeypatch.setattr(_session.ort, "get_available_providers", lambda: [cuda, cpu])
    assert default_providers() == [cuda, cpu]
    assert default_providers(1) == [(cuda, {"device_id": "1"}), cpu]
    monkeypatch.setattr(_session.ort, "get_available_providers", lambda: [cpu])
    assert default_providers(1) == [cpu], "no CUDA in this build: the CPU, said in the log"
