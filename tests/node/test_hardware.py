"""What a node reports of its GPUs, and which device its sessions run on."""

from __future__ import annotations

import shutil

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
    monkeypatch.setattr(_session, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(_session, "_load_cuda_libraries", lambda: None)
    assert default_providers() == [cuda, cpu]
    assert default_providers(1) == [(cuda, {"device_id": "1"}), cpu]
    with pytest.raises(ValueError, match=r"GPU 2 asked for, but the CUDA driver sees 2 \(0..1\)"):
        default_providers(2)
    monkeypatch.setattr(_session.ort, "get_available_providers", lambda: [cpu])
    assert default_providers(1) == [cpu], "no CUDA in this build: the CPU, said in the log"


def test_a_gpu_build_without_a_device_runs_on_the_cpu(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime-gpu lists CUDA on any machine: what counts is a device the driver sees."""
    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
    monkeypatch.setattr(_session.ort, "get_available_providers", lambda: [cuda, cpu])
    monkeypatch.setattr(_session, "cuda_device_count", lambda: 0)
    assert default_providers() == [cpu]
    assert default_providers(0) == [cpu]
    assert "no CUDA device is visible" in caplog.text


def test_this_machine_counts_its_cuda_devices() -> None:
    """The driver query itself: none without NVIDIA's driver, at least one with it."""
    count = _session.cuda_device_count.__wrapped__()
    if shutil.which("nvidia-smi") is None:
        assert count == 0
    else:
        assert count >= 1
