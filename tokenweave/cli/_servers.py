"""`tokenweave coordinator` and `tokenweave node`: long-running daemons with clean shutdown.

Each daemon imports only its own side: a node that imported the coordinator (web3, eth_account,
the EVM) took about 1.5 s more CPU to start.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenweave.coordinator import CoordinatorConfig
    from tokenweave.node import NodeConfig

logger = logging.getLogger(__name__)


def run_until_signalled(body: Callable[[asyncio.Event], Awaitable[None]]) -> int:
    """Run `body(stop)` on a fresh loop; SIGINT/SIGTERM set `stop` (a second one aborts)."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            if stop.is_set():
                logger.warning("second %s: exiting now", sig.name)
                raise SystemExit(130)
            logger.info("%s: shutting down", sig.name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
        await body(stop)

    asyncio.run(main())
    return 0


def quieter_gc() -> None:
    """A server holds millions of long-lived objects (its queue, lanes, flights) and makes
    small ones by the million a minute (messages, futures): the collector's defaults ran a
    young collection every 700 allocations and spent a fifth of a busy coordinator's time.
    What exists at start (modules, the schema, the catalog) is frozen out of collection, and
    young collections wait for 50,000 allocations (cycles are rare in this code)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def run_coordinator(config: CoordinatorConfig) -> int:
    from tokenweave.coordinator import CoordinatorServer

    async def body(stop: asyncio.Event) -> None:
        server = await CoordinatorServer.create(config)
        quieter_gc()
        logger.info("coordinator listening on %s", server.address)
        await stop.wait()
        await server.shutdown()

    return run_until_signalled(body)


def run_node(config: NodeConfig) -> int:
    from tokenweave.node import NodeDaemon

    async def body(stop: asyncio.Event) -> None:
        daemon = await NodeDaemon.create(config)
        if config.metrics_listen is not None:
            from tokenweave.node._metrics import serve_metrics

            metrics = serve_metrics(daemon, config.metrics_listen, config.data_dir)
        unit = {m: "items/s" for m in daemon.registered_models}
        speeds = ", ".join(
            f"{m} {s:,.0f} {unit.get(m, 'tokens/s')}" for m, s in daemon.speeds.items()
        )
        logger.info(
            "node %s → %s (%s)",
            *(daemon.identity.address, config.coordinator, speeds),
            extra={"node_id": daemon.identity.address},
        )
        try:
            await daemon.run(stop)
        finally:
            if config.metrics_listen is not None:
                metrics.shutdown()

    return run_until_signalled(body)
