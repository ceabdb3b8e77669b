"""NodeConfig: every setting of the node daemon, with its default."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Windows per inference batch by default: a GPU needs hundreds to be kept busy (MiniLM on an
#: H100: 8.1 M tokens/s at 64 windows of 256 tokens, 9.4 M at 1,024).
CPU_BATCH = 32
GPU_BATCH = 256


@dataclass(frozen=True)
class NodeConfig:
    #: host:port of the coordinator.
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
    #: Shards held at once: one running, the rest prefetched.
    max_inflight_shards: int = 2
    #: Seconds a running shard gets to finish on SIGINT/SIGTERM before it is handed back.
    shutdown_grace_s: float = 60.0
    #: Reconnection backoff: first delay and cap, in seconds (with full jitter).
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 10.0
    max_message_bytes: int = 256 * 1024 * 1024
    #: libp2p listen address for serving dataset blocks to peers.
    p2p_listen: str = "/ip4/127.0.0.1/tcp/0"
    #: Most bytes of dataset blocks kept in `<data_dir>/blocks`; unset: no limit.
    block_quota_bytes: int | None = None
