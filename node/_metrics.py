"""Prometheus metrics of a node: `tokenweave node --metrics-listen HOST:PORT` serves `/metrics`.

Read at each scrape: the CPU's utilisation and the process's memory (psutil), shards completed,
each model's measured speed and the seconds it took to load and calibrate, and each GPU's
utilisation and memory when NVIDIA's management library can be loaded (`pynvml`, from the
`nvidia-ml-py` package; without it no GPU series are exported). The address it serves on is
written to `<data-dir>/metrics_address` (port 0 picks a free one).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tokenweave._address import parse_address

if TYPE_CHECKING:
    from tokenweave.node._daemon import NodeDaemon

logger = logging.getLogger(__name__)

#: The port when `--metrics-listen` names none (the OpenTelemetry exporters' Prometheus port).
METRICS_PORT = 9464


def _gpus() -> list[tuple[str, float, int, int]]:
    """(name, utilisation 0-1, memory used, memory total) of each GPU NVML reports; [] when
    NVML cannot be loaded (no driver, or no `nvidia-ml-py`)."""
    try:
        import pynvml  # type: ignore[import-not-found]

        pynvml.nvmlInit()
    except Exception:
        return []
    found = []
    for i in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(i)
        used = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        found.append((f"{i}", float(used), int(memory.used), int(memory.total)))
    return found


class NodeCollector(Collector):
    def __init__(self, daemon: NodeDaemon) -> None:
        self._daemon = daemon
        self._process = psutil.Process()
        psutil.cpu_percent(None)  # the first reading starts the interval

    def collect(self) -> Iterator[Metric]:
        d = self._daemon
        yield GaugeMetricFamily(
            "tokenweave_node_cpu_utilisation_ratio",
            "The machine's CPU utilisation since the last scrape (0 to 1).",
            value=psutil.cpu_percent(None) / 100,
        )
        yield GaugeMetricFamily(
            "tokenweave_node_resident_memory_bytes",
            "The node process's resident memory.",
            value=self._process.memory_info().rss,
        )
        yield CounterMetricFamily(
            "tokenweave_node_shards_completed",
            "Shards this node ran to a result since it started.",
            value=d.shards_done,
        )
        speed = GaugeMetricFamily(
            "tokenweave_node_model_speed",
            "Each model's measured speed (tokens/s; items/s for registered ONNX models).",
            labels=["model"],
        )
        load = GaugeMetricFamily(
            "tokenweave_node_model_load_seconds",
            "Seconds each model took to load and calibrate at start.",
            labels=["model"],
        )
        for model, value in sorted(d.speeds.items()):
            speed.add_metric([model], value)
        for model, seconds in sorted(d.load_seconds.items()):
            load.add_metric([model], seconds)
        yield speed
        yield load
        gpus = _gpus()
        if gpus:
            used = GaugeMetricFamily(
                "tokenweave_node_gpu_utilisation_ratio", "GPU utilisation (NVML).", labels=["gpu"]
            )
            memory = GaugeMetricFamily(
                "tokenweave_node_gpu_memory_used_bytes", "GPU memory in use (NVML).", labels=["gpu"]
            )
            for gpu, ratio, in_use, _total in gpus:
                used.add_metric([gpu], ratio)
                memory.add_metric([gpu], in_use)
            yield used
            yield memory


def serve_metrics(daemon: NodeDaemon, listen: str, data_dir: Path) -> Any:
    """Serve `/metrics` on `listen` (a thread of its own); returns the server (its
    `shutdown()` stops it)."""
    address = parse_address(listen, "--metrics-listen", METRICS_PORT, listen=True)
    host, port = address.rsplit(":", 1)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector(daemon))
    server, _thread = start_http_server(int(port), host.strip("[]"), registry=registry)
    bound = f"{host}:{server.server_port}"
    staged = data_dir / "metrics_address.tmp"
    staged.write_text(bound + "\n")
    staged.replace(data_dir / "metrics_address")
    logger.info("metrics at http://%s/metrics", bound)
    return server
