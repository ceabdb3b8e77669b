"""The registered ONNX models a node serves: listed by the coordinator, fetched from peers,
checked, loaded and timed, before the node registers.

`--serve` names them (default `*`: the registered models, by name, while their files together
fit in a quarter of the node's memory; `none`: none). A model already kept in the node's data dir
(`models/onnx/<sha256>.onnx`, re-hashed on load) is not fetched again; otherwise its file's
blocks come from the peers that hold them (the coordinator says which; both calls are public),
every block checked against its CID, the DAG measured before it is read (no more than the
registered size), and the whole file against the registered sha256, then `inspect_onnx` (a node
never loads a file with custom operators or external data, whatever the coordinator says). A
model that fails is logged and skipped: the node serves the rest. Models registered after the
node started are served from its next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
from grpc import aio

from tokenweave.errors import TokenweaveError
from tokenweave.models import (
    OnnxSession,
    default_providers,
    sha256_of,
    store_model,
    stored_model_path,
)
from tokenweave.node._config import NodeConfig
from tokenweave.storage import CID, DagLimits, file_leaves, measure_dag, read_file
from tokenweave.v1 import data_pb2, data_pb2_grpc, models_pb2, models_pb2_grpc

logger = logging.getLogger(__name__)

#: Items per second believed of a model whose calibration could not run.
UNCALIBRATED_ITEMS_PER_S = 10.0
ALL = "*"
NONE = "none"


class Fetcher(Protocol):
    """Blocks from peers (`tokenweave.storage.BlockExchange`); blocking, verified."""

    def fetch(self, cid: CID, providers: Sequence[str]) -> bytes: ...


class LocalBlocks(Protocol):
    """The node's own blocks (`tokenweave.storage.BlockStore`): verified reads."""

    def has(self, cid: CID) -> bool: ...
    def get(self, cid: CID) -> bytes: ...


async def serve_registered(
    config: NodeConfig,
    channel: aio.Channel,
    exchange: Fetcher,
    local: LocalBlocks,
    memory_bytes: int,
) -> tuple[dict[str, OnnxSession], dict[str, float]]:
    """Load the registered models `config.serve` asks for; their sessions and items/s."""
    wanted = set(config.serve)
    if not wanted or wanted == {NONE}:
        return {}, {}
    try:
        listed = await models_pb2_grpc.ModelServiceStub(channel).ListModels(
            models_pb2.ListModelsRequest(), timeout=30
        )
    except aio.AioRpcError as exc:
        logger.warning("registered models not listed (%s): serving none", exc.details())
        return {}, {}
    registered = {m.name: m for m in listed.models if m.kind == "onnx"}
    for name in sorted(wanted - set(registered) - {ALL}):
        logger.warning("--serve %s: no such registered model", name)
    cache = config.data_dir / "models"
    data = data_pb2_grpc.DataServiceStub(channel)
    sessions: dict[str, OnnxSession] = {}
    speeds: dict[str, float] = {}
    budget = memory_bytes // 4  # for the models `*` chooses, all of them together
    for name, info in sorted(registered.items()):
        if ALL not in wanted and name not in wanted:
            continue
        if ALL in wanted and name not in wanted:
            if info.size_bytes > budget:
                logger.info("model %s (%d bytes) does not fit: not served", name, info.size_bytes)
                continue
            budget -= info.size_bytes
        try:
            path = stored_model_path(cache, info.sha256)
            if not path.exists():
                started = time.monotonic()
                blob = await _fetch(info, data, exchange, local)
                await asyncio.to_thread(store_model, cache, blob)
                logger.info(
                    "model %s: %d bytes fetched from peers in %.2f s",
                    *(name, len(blob), time.monotonic() - started),
                )
            providers = list(config.providers) or default_providers(config.gpu)
            session = await asyncio.to_thread(
                OnnxSession, path, info.sha256, providers, config.threads
            )
        except Exception as exc:
            logger.warning("model %s not served: %s", name, getattr(exc, "message", exc))
            continue
        sessions[name] = session
        speeds[name] = await asyncio.to_thread(_items_per_second, session)
        logger.info("model %s (sha256 %s…): %.0f items/s", name, info.sha256[:12], speeds[name])
    return sessions, speeds


#: Blocks of a model fetched at once.
FETCH_PARALLEL = 8


async def _fetch(
    info: models_pb2.ModelInfo,
    data: data_pb2_grpc.DataServiceAsyncStub,
    exchange: Fetcher,
    local: LocalBlocks,
) -> bytes:
    """The file's bytes: its interior blocks first (measured against the registered size),
    then its leaves, `FETCH_PARALLEL` at a time, each from one of the peers holding the file's
    root in turn (asking all of them for every block would move it once a peer, the fastest
    answer winning), then from any of them, then from the block's own providers."""
    loop = asyncio.get_running_loop()

    def providers(cid: CID) -> list[str]:
        async def ask() -> list[str]:
            reply = await data.GetProviders(data_pb2.GetProvidersRequest(cid=str(cid)), timeout=30)
            return [a for p in reply.providers for a in p.multiaddrs]

        return asyncio.run_coroutine_threadsafe(ask(), loop).result()

    root = CID.parse(info.cid)
    holders: list[str] = []
    kept: dict[CID, bytes] = {}

    def source(cid: CID) -> bytes:
        if cid in kept:
            return kept[cid]
        if local.has(cid):  # this node holds a replica of the file
            block = local.get(cid)
        else:
            try:
                block = exchange.fetch(cid, holders or providers(cid))
            except TokenweaveError:  # a holder of the root lacks this block: ask for it alone
                block = exchange.fetch(cid, providers(cid))
        kept[cid] = block
        return block

    def read() -> bytes:
        holders.extend(providers(root))
        limits = DagLimits(  # the file, and its interior nodes' few bytes a leaf
            max_bytes=info.size_bytes + info.size_bytes // 64 + (1 << 20),
            max_links=1_000_000,
            max_depth=32,
            max_fanout=16_384,
        )
        measure_dag(root, source, limits)  # fetches (and keeps) the interior blocks

        def leaf(numbered: tuple[int, CID]) -> None:
            index, cid = numbered
            if holders and not local.has(cid):  # spread over the holders, one each
                with contextlib.suppress(TokenweaveError):  # else from any of them, below
                    kept[cid] = exchange.fetch(cid, [holders[index % len(holders)]])
                    return
            source(cid)

        wanted = [c for c in file_leaves(root, source) if c not in kept]
        with ThreadPoolExecutor(FETCH_PARALLEL) as pool:
            list(pool.map(leaf, enumerate(wanted)))
        blob = b"".join(read_file(root, source))
        if sha256_of(blob) != info.sha256:
            raise ValueError(f"the file fetched as {info.cid} is not the registered one")
        return blob

    return await asyncio.to_thread(read)


def _items_per_second(session: OnnxSession, runs: int = 3) -> float:
    """Rows per second through the model on zeros (dimensions of any size taken as 32)."""
    feed = {
        t.name: np.zeros(
            [1 if axis == 0 and d < 0 else (32 if d < 0 else d) for axis, d in enumerate(t.shape)],
            dtype=t.dtype,
        )
        for t in session.manifest.inputs
    }
    try:
        session.run(feed)
        started = time.perf_counter()
        for _ in range(runs):
            session.run(feed)
        elapsed = time.perf_counter() - started
    except Exception as exc:  # a model whose other dimensions are not free: believe a default
        logger.info("calibration of a registered model failed (%s); assuming 10 items/s", exc)
        return UNCALIBRATED_ITEMS_PER_S
    return runs / max(elapsed, 1e-6)
