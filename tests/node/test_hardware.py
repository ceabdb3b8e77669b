"""What a node reports of its GPUs, and which device its sessions run on."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tokenweave.models import _session, default_providers
from tokenweave.node._config import NodeConfig
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


def test_both_onnxruntime_builds_installed_are_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_session, "onnxruntime_builds", lambda: ["onnxruntime", "onnxruntime-gpu"])
    _session._warn_of_mixed_builds.cache_clear()
    try:
        default_providers()
    finally:
        _session._warn_of_mixed_builds.cache_clear()
    assert "onnxruntime and onnxruntime-gpu are both installed" in caplog.text
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in caplog.text


def test_this_environment_has_exactly_one_build() -> None:
    assert _session.onnxruntime_builds() in (["onnxruntime"], ["onnxruntime-gpu"])


def test_without_onnxruntime_the_error_names_the_extras() -> None:
    code = "import sys; sys.modules['onnxruntime'] = None; import tokenweave.models"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "pip install 'tokenweave[cpu]'" in proc.stderr
    assert "'tokenweave[gpu]'" in proc.stderr


def test_device_dependent_defaults() -> None:
    cpu = NodeConfig().resolved(on_gpu=False)
    assert (cpu.batch_size, cpu.concurrent_shards, cpu.max_inflight_shards) == (32, 1, 2)
    gpu = NodeConfig().resolved(on_gpu=True)
    assert (gpu.batch_size, gpu.concurrent_shards, gpu.max_inflight_shards) == (256, 32, 64)
    told = NodeConfig(batch_size=64, concurrent_shards=40).resolved(on_gpu=True)
    assert (told.batch_size, told.concurrent_shards, told.max_inflight_shards) == (64, 40, 64)
