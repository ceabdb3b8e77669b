"""NodeConfig: every setting of the node daemon, with its default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from tokenweave._address import parse_addresses

#: Windows per inference batch by default: a GPU needs hundreds to be kept busy (MiniLM on an
#: H100: 8.1 M tokens/s at 64 windows of 256 tokens, 9.4 M at 1,024).
CPU_BATCH = 32
GPU_BATCH = 256
#: Shards run at once by default on a GPU, their windows joined into batches (a shard is 16
#: windows by default: 16 of them fill a GPU batch, and 32 keep the next batch gathering while
#: one runs: measured best of 16/32/64 on an H100, benchmarks/bench_gpu.py). A CPU runs one
#: at a time.
GPU_CONCURRENT_SHARDS = 32


@dataclass(frozen=True)
class NodeConfig:
    """What `tokenweave node` was told. Settings left unset (None) that depend on the device
    are filled in by `resolved` once the node knows whether it runs on a GPU."""

    #: host:port of the coordinator; several coordinators of one network, comma-separated,
    #: are tried in turn: the node fails over to the next when one stops answering.
    coordinator: str = "127.0.0.1:50051"
    #: The CA that signed the coordinator's TLS certificate; unset: plaintext (loopback only).
    tls_ca: Path | None = None
    #: This node's certificate and key, for a coordinator that asks for mutual TLS.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Holds the node's key (node_key.json).
    data_dir: Path = Path("node-data")
    #: Where prepared models are cached (default: the user cache, see `tokenweave models`).
    model_cache: Path | None = None
    models: tuple[str, ...] = ("all-minilm-l6-v2",)
    #: Registered ONNX models to serve: names, "*" (every one that fits in a quarter of the
    #: node's memory) or "none".
    serve: tuple[str, ...] = ("*",)
    #: ONNX Runtime providers in order of preference; empty: CUDA when available, else CPU.
    providers: tuple[str, ...] = ()
    #: The CUDA device to run on (with the CUDA provider); unset: device 0.
    gpu: int | None = None
    #: Windows per inference batch; unset: 32 on the CPU, 256 on a GPU.
    batch_size: int | None = None
    #: ONNX Runtime intra-op threads; 0 lets it choose (one per core).
    threads: int = 0
    #: Full windows run to measure the node's speed at start (fewer: faster, rougher; on a GPU
    #: at least one batch, or it would time the launch overhead). The claim only bounds what
    #: the coordinator believes: it caps a node's share by the speed it observes, so half a
    #: second of calibration is enough.
    calibration_windows: int = 8
    #: Shards run at once (on a GPU their windows join batches, see `batch_delay_ms`); unset:
    #: 1 on the CPU, GPU_CONCURRENT_SHARDS (32) on a GPU.
    concurrent_shards: int | None = None
    #: Shards held at once: those running, the rest prefetched; unset: twice
    #: `concurrent_shards` (the coordinator accepts 1 to 64).
    max_inflight_shards: int | None = None
    #: On a GPU, how long the first shard's windows wait for others to join their batch.
    batch_delay_ms: float = 2.0
    #: Seconds a running shard gets to finish on SIGINT/SIGTERM before it is handed back.
    shutdown_grace_s: float = 60.0
    #: Reconnection backoff: first delay and cap, in seconds (with full jitter).
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    max_message_bytes: int = 256 * 1024 * 1024
    #: libp2p listen address for serving dataset blocks to peers.
    p2p_listen: str = "/ip4/127.0.0.1/tcp/0"
    #: HOST[:PORT] to serve Prometheus metrics on (`/metrics`); unset: none.
    metrics_listen: str | None = None
    #: Most bytes of dataset blocks kept in `<data_dir>/blocks`; unset: no limit.
    block_quota_bytes: int | None = None

    @property
    def coordinators(self) -> tuple[str, ...]:
        """The coordinators' addresses, in the order they are tried (each HOST:PORT; a
        missing port is 50051, a URL is refused)."""
        return parse_addresses(self.coordinator, "--coordinator")

    def resolved(self, on_gpu: bool) -> NodeConfig:
        """This config with the device-dependent defaults filled in."""
        batch = self.batch_size or (GPU_BATCH if on_gpu else CPU_BATCH)
        concurrent = self.concurrent_shards or (GPU_CONCURRENT_SHARDS if on_gpu else 1)
        inflight = self.max_inflight_shards or min(64, max(2, 2 * concurrent))
        return dataclasses.replace(
            self, batch_size=batch, concurrent_shards=concurrent, max_inflight_shards=inflight
        )
