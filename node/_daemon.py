"""NodeDaemon: builds a node's parts and keeps it connected to the coordinator until stopped.

The parts, each behind a small interface:

* `BlockService` (_blocks.py) — dataset blocks: keep, copy from peers, prove, read with heal;
  it also serves peers through the libp2p `BlockExchange`.
* `ShardWorker` (_worker.py) — `run(assignment) -> LeaseRequest` through the shard's workload,
  lent the node's `NodeResources` (_runtime.py): its models, and dataset documents read through
  the `BlockService`.
* `LeaseSession` (_session.py) — one connection: register, heartbeat, route the lease stream,
  drain on stop. The daemon starts one after another (`keep_connected`, _reconnect.py) with
  backoff; a refused registration ends the daemon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from tokenweave import __version__, workloads
from tokenweave._datadir import DataDirLock
from tokenweave.models import (
    CUDA_PROVIDER,
    DynamicBatcher,
    EmbeddingSession,
    Generator,
    Message,
    OnnxSession,
    Precision,
    Provider,
    default_cache_dir,
    default_providers,
    is_generator,
    load_prepared,
    prepare_generator,
    prepare_model,
    provider_name,
)
from tokenweave.node._blocks import BlockService
from tokenweave.node._config import NodeConfig
from tokenweave.node._hardware import detect_hardware
from tokenweave.node._identity import NodeIdentity
from tokenweave.node._models import serve_registered
from tokenweave.node._reconnect import Backoff, keep_connected
from tokenweave.node._runner import ShardRunner
from tokenweave.node._runtime import NodeResources
from tokenweave.node._session import LeaseSession, SessionLostError, open_channel
from tokenweave.node._worker import ShardWorker
from tokenweave.storage import BlockExchange, BlockStore
from tokenweave.v1 import jobs_pb2, nodes_pb2

logger = logging.getLogger(__name__)


class NodeDaemon:
    """Create with `await NodeDaemon.create(config)`, then `await run(stop_event)`."""

    def __init__(
        self,
        config: NodeConfig,
        identity: NodeIdentity,
        runners: dict[str, ShardRunner],
        speeds: dict[str, float],
        blocks: BlockService,
        exchange: BlockExchange,
        lock: DataDirLock | None = None,
        generators: dict[str, Generator] | None = None,
        onnx: dict[str, OnnxSession] | None = None,
    ) -> None:
        self.config = config
        self._lock = lock
        #: Sessions so far: the coordinator of the next one is this one of the list, modulo.
        self._next_coordinator = 0
        self.identity = identity
        self._runners = runners
        self._generators = generators or {}
        self._onnx = onnx or {}
        self._speeds = speeds
        #: Seconds each text model took to load and calibrate (set by `create`).
        self.load_seconds: dict[str, float] = {}
        self.blocks = blocks
        self.exchange = exchange
        providers = [r.provider for r in runners.values()]
        providers += [g.provider for g in self._generators.values()]
        self.worker = ShardWorker(
            NodeResources(runners, blocks, self._generators, self._onnx),
            providers[0] if providers else "",
        )
        self._registration = self._registration_template()

    @classmethod
    async def create(cls, config: NodeConfig) -> NodeDaemon:
        """Raises `DataDirLockedError` when another process holds `config.data_dir`; the lock is
        held until `run` returns; InvalidArgumentError for a coordinator address that is not
        HOST[:PORT] (before any model loads)."""
        config.coordinators  # noqa: B018 - parsed now, to fail before the models load
        lock = DataDirLock.acquire(config.data_dir, "node")
        try:
            return await cls._create(config, lock)
        except BaseException:
            lock.release()
            raise

    @classmethod
    async def _create(cls, config: NodeConfig, lock: DataDirLock) -> NodeDaemon:
        workloads.load_plugins()
        identity = NodeIdentity.load_or_create(config.data_dir)
        cache = config.model_cache or default_cache_dir()
        runners: dict[str, ShardRunner] = {}
        generators: dict[str, Generator] = {}
        speeds: dict[str, float] = {}
        loaded: dict[str, float] = {}
        providers = _providers(config)
        on_gpu = provider_name(providers[0]) == CUDA_PROVIDER
        config = config.resolved(on_gpu)
        assert config.batch_size is not None  # resolved
        assert config.concurrent_shards is not None
        for name in config.models:
            began = time.monotonic()
            if is_generator(name):
                generator = await asyncio.to_thread(_load_generator, name, config)
                speeds[name] = await asyncio.to_thread(_decode_speed, generator)
                generators[name] = generator
                loaded[name] = time.monotonic() - began
                logger.info(
                    "model %s (sha256 %s…, %s decoder) on %s: %.0f tokens/s generated",
                    name,
                    generator.sha256[:12],
                    generator.precision.value,
                    generator.provider,
                    speeds[name],
                )
                continue
            # A GPU runs the fused fp16 graph (built once, beside the fp32 one).
            await asyncio.to_thread(prepare_model, name, cache, fp16=on_gpu)
            prepared = await asyncio.to_thread(load_prepared, name, cache)
            session = EmbeddingSession(
                prepared,
                providers=providers,
                intra_op_threads=config.threads,
                batch_size=config.batch_size,
            )
            batcher = None
            if config.concurrent_shards > 1:  # concurrent shards' windows meet in one batch
                batcher = DynamicBatcher(
                    session, config.batch_size, max_delay_s=config.batch_delay_ms / 1000
                )
            runner = ShardRunner(prepared, session, batcher)
            windows = max(config.calibration_windows, config.batch_size if on_gpu else 0)
            speeds[name] = await asyncio.to_thread(runner.calibrate, windows)
            runners[name] = runner
            loaded[name] = time.monotonic() - began
            logger.info(
                "model %s (sha256 %s…, %s) on %s: %.0f tokens/s",
                name,
                prepared.sha256[:12],
                session.precision,
                runner.provider,
                speeds[name],
            )
        blocks = BlockService(BlockStore(config.data_dir / "blocks", config.block_quota_bytes))
        exchange = BlockExchange(blocks.read_block, identity.private_key, config.p2p_listen)
        blocks.exchange = exchange
        await asyncio.to_thread(exchange.start)
        logger.info("serving blocks as %s on %s", exchange.peer_id, ", ".join(exchange.addrs))
        memory = int(str(detect_hardware()["memory_bytes"]))
        async with open_channel(config) as channel:
            onnx, onnx_speeds = await serve_registered(
                config, channel, exchange, blocks.store, memory
            )
        speeds.update(onnx_speeds)
        daemon = cls(config, identity, runners, speeds, blocks, exchange, lock, generators, onnx)
        daemon.load_seconds = loaded
        return daemon

    @property
    def speeds(self) -> dict[str, float]:
        """Tokens/s of each text model, items (rows) per second of each registered model."""
        return dict(self._speeds)

    @property
    def registered_models(self) -> frozenset[str]:
        """The registered ONNX models served (their speeds are items per second)."""
        return frozenset(self._onnx)

    @property
    def shards_done(self) -> int:
        return self.worker.shards_done

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set, reconnecting with jittered exponential backoff.

        Raises `RegistrationRefusedError` when the coordinator refuses this node."""
        self.blocks.attach(asyncio.get_running_loop())
        try:
            backoff = Backoff(self.config.backoff_initial_s, self.config.backoff_max_s)
            await keep_connected(self._session, stop, backoff)
            logger.info("node stopped")
        finally:
            for runner in self._runners.values():
                runner.close()
            try:
                await asyncio.to_thread(self.exchange.stop)
            finally:
                if self._lock is not None:
                    self._lock.release()

    async def _session(self, stop: asyncio.Event) -> bool:
        """One session with the current coordinator; whether it registered (a lost session is
        logged, not raised). When it ends, the next coordinator of the list is the current one:
        a node given several fails over from one that died or stopped answering."""
        addresses = self.config.coordinators
        address = addresses[self._next_coordinator % len(addresses)]
        config = dataclasses.replace(self.config, coordinator=address)
        session = LeaseSession(
            config, self.identity, self._registration, self.blocks, self.worker.run
        )
        try:
            await session.run(stop)
        except SessionLostError as exc:
            logger.warning("coordinator %s: %s", address, exc.message)
        if len(addresses) > 1 and not stop.is_set():
            self._next_coordinator += 1
            logger.info(
                "failing over to coordinator %s", addresses[self._next_coordinator % len(addresses)]
            )
        return session.registered

    def _registration_template(self) -> nodes_pb2.RegisterRequest:
        """What this node tells the coordinator; a session adds the address and signature."""
        hw = detect_hardware()
        return nodes_pb2.RegisterRequest(
            hardware=jobs_pb2.Hardware(
                cpu_cores=int(str(hw["cpu_cores"])),
                memory_bytes=int(str(hw["memory_bytes"])),
                gpus=[
                    jobs_pb2.Gpu(
                        name=str(g["name"]),
                        memory_bytes=int(str(g["memory_bytes"])),
                        compute_capability=str(g.get("compute_capability", "")),
                    )
                    for g in hw["gpus"]  # type: ignore[attr-defined]
                ],
                providers=list(hw["providers"]),  # type: ignore[call-overload]
                platform=str(hw["platform"]),
            ),
            models=[
                jobs_pb2.NodeModel(
                    name=name, sha256=r.model.sha256, tokens_per_second=self._speeds[name]
                )
                for name, r in self._runners.items()
            ]
            + [
                jobs_pb2.NodeModel(name=name, sha256=g.sha256, tokens_per_second=self._speeds[name])
                for name, g in self._generators.items()
            ]
            + [
                jobs_pb2.NodeModel(name=name, sha256=o.sha256, tokens_per_second=self._speeds[name])
                for name, o in self._onnx.items()
            ],
            max_inflight_shards=self.config.max_inflight_shards or 2,
            version=__version__,
            peer_id=self.exchange.peer_id,
            multiaddrs=self.exchange.addrs,
            workloads=workloads.names(),
        )


def _load_generator(name: str, config: NodeConfig) -> Generator:
    """The exact decoder on the CPU; on a GPU its fp16 form (cache kept on the device), which
    serves the same model."""
    providers = _providers(config)
    on_gpu = provider_name(providers[0]) == CUDA_PROVIDER
    precisions = (Precision.EXACT, Precision.HALF) if on_gpu else (Precision.EXACT,)
    prepared = prepare_generator(name, config.model_cache or default_cache_dir(), precisions)
    return Generator(prepared, precisions[-1], threads=config.threads, providers=providers)


def _providers(config: NodeConfig) -> list[Provider]:
    """`--providers` as given, else CUDA on `--gpu` (when this build has it), then the CPU."""
    return list(config.providers) or default_providers(config.gpu)


def _decode_speed(generator: Generator, tokens: int = 8) -> float:
    """Tokens per second generated after a short chat prompt (the cost of a generation is its
    prompt plus its tokens, and decoding is most of the time)."""
    prompt = generator.encode(generator.chat_prompt([Message("user", "Count to ten.")]))
    timing = generator.decoder.timed(prompt, tokens)
    return (timing.prefill_tokens + timing.decode_tokens) / (timing.prefill_s + timing.decode_s)
