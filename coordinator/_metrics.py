"""Prometheus metrics of a coordinator: `GET /metrics` on its HTTP port (`--http-listen`).

Read at each scrape from what the coordinator already keeps — the database (jobs by state,
shards by state, each node's counters, the ledger, epochs, block providers) and the dispatcher's
memory (its queue, the connected nodes) — so that no exported counter can drift from the truth
the coordinator acts on. The one thing observed as it happens is how long a shard waits in the
queue before it is leased (`tokenweave_lease_wait_seconds`, a histogram the dispatcher feeds).

Names follow Prometheus' conventions: `tokenweave_` prefix, units in names, `_total` counters.
Node-labelled series carry the node's id (its address), so a network of 10,000 nodes exports
10,000 series per node metric: scrape accordingly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import (
    BlockProviderRow,
    EpochRow,
    JobRow,
    LedgerRow,
    NodeRow,
    ShardRow,
)

if TYPE_CHECKING:
    from tokenweave.coordinator._dispatch import Dispatcher
    from tokenweave.coordinator._lanes import Lanes

#: Seconds a shard waited in the queue before a node was leased it.
LEASE_WAIT = Histogram(
    "tokenweave_lease_wait_seconds",
    "Seconds a shard waited in the coordinator's queue before it was leased to a node.",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800),
    registry=None,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one scrape read."""

    jobs: dict[str, int]
    shards: dict[str, int]
    queued: int
    connected: set[str]
    nodes: list[tuple[str, int, int, float, int, int, int, int, int]]
    model_tokens: dict[str, int]
    epochs: dict[str, int]
    last_epoch: int
    blocks_below_target: int


class _Snapshot(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._s = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._s
        jobs = GaugeMetricFamily("tokenweave_jobs", "Jobs by state.", labels=["state"])
        for state, n in sorted(s.jobs.items()):
            jobs.add_metric([state], n)
        yield jobs
        shards = GaugeMetricFamily(
            "tokenweave_shards", "Shards by state, in the database.", labels=["state"]
        )
        for state, n in sorted(s.shards.items()):
            shards.add_metric([state], n)
        yield shards
        yield GaugeMetricFamily(
            "tokenweave_shards_queued", "Shards in this coordinator's queue now.", value=s.queued
        )
        yield GaugeMetricFamily(
            "tokenweave_nodes_connected",
            "Nodes with a lease stream open to this coordinator.",
            value=len(s.connected),
        )
        done = CounterMetricFamily(
            "tokenweave_node_shards",
            "Shards each node completed and was paid for.",
            labels=["node"],
        )
        tokens = CounterMetricFamily(
            "tokenweave_node_tokens", "Model tokens of each node's accepted work.", labels=["node"]
        )
        failed = CounterMetricFamily(
            "tokenweave_node_shard_failures", "Shards each node reported failed.", labels=["node"]
        )
        verified = CounterMetricFamily(
            "tokenweave_node_verifications",
            "Verifications of each node's output, by outcome.",
            labels=["node", "outcome"],
        )
        audits = CounterMetricFamily(
            "tokenweave_node_audits",
            "Storage audits of each node, by outcome.",
            labels=["node", "outcome"],
        )
        reputation = GaugeMetricFamily("tokenweave_node_reputation", "Reputation.", labels=["node"])
        online = GaugeMetricFamily(
            "tokenweave_node_online",
            "1 when the node is connected to this coordinator.",
            labels=["node"],
        )
        for node, n_done, n_tokens, rep, failures, v_ok, v_bad, a_ok, a_bad in s.nodes:
            done.add_metric([node], n_done)
            tokens.add_metric([node], n_tokens)
            failed.add_metric([node], failures)
            verified.add_metric([node, "agreed"], v_ok)
            verified.add_metric([node, "caught"], v_bad)
            audits.add_metric([node, "passed"], a_ok)
            audits.add_metric([node, "failed"], a_bad)
            reputation.add_metric([node], rep)
            online.add_metric([node], 1 if node in s.connected else 0)
        yield from (done, tokens, failed, verified, audits, reputation, online)
        by_model = CounterMetricFamily(
            "tokenweave_model_tokens", "Model tokens of accepted work, by model.", labels=["model"]
        )
        for model, n in sorted(s.model_tokens.items()):
            by_model.add_metric([model], n)
        yield by_model
        epochs = GaugeMetricFamily("tokenweave_epochs", "Closed epochs by state.", labels=["state"])
        for state, n in sorted(s.epochs.items()):
            epochs.add_metric([state], n)
        yield epochs
        yield GaugeMetricFamily(
            "tokenweave_epoch_last",
            "The newest closed epoch's number (0: none).",
            value=s.last_epoch,
        )
        yield GaugeMetricFamily(
            "tokenweave_blocks_below_target",
            "Dataset blocks recorded on fewer nodes than the coordinator keeps (--replicas).",
            value=s.blocks_below_target,
        )


async def snapshot(
    sessions: async_sessionmaker[AsyncSession], queued: int, connected: set[str], replicas: int
) -> Snapshot:
    """Read what a scrape reports (a handful of aggregate queries)."""
    async with sessions() as session:

        async def counts(column: Any, value: Any = None) -> dict[str, int]:
            """`value` (default: the row count) summed for each value of `column`."""
            summed = func.count() if value is None else func.sum(value)
            rows = await session.execute(select(column, summed).group_by(column))
            return {str(key): int(n or 0) for key, n in rows}

        jobs = await counts(JobRow.state)
        shards = await counts(ShardRow.state)
        nodes = [
            tuple(row)
            for row in await session.execute(
                select(
                    NodeRow.node_id,
                    NodeRow.shards_done,
                    NodeRow.tokens_processed,
                    NodeRow.reputation,
                    NodeRow.shards_failed,
                    NodeRow.verifications_passed,
                    NodeRow.verifications_failed,
                    NodeRow.audits_passed,
                    NodeRow.audits_failed,
                ).order_by(NodeRow.node_id)
            )
        ]
        model_tokens = await counts(LedgerRow.model, LedgerRow.tokens)
        epochs = await counts(EpochRow.state)
        last_epoch = await session.scalar(select(func.max(EpochRow.epoch))) or 0
        held = (
            select(BlockProviderRow.cid)
            .group_by(BlockProviderRow.cid)
            .having(func.count() < replicas)
            .subquery()
        )
        below = await session.scalar(select(func.count()).select_from(held)) or 0
    return Snapshot(
        jobs,
        shards,
        queued,
        connected,
        nodes,  # type: ignore[arg-type]
        model_tokens,
        epochs,
        int(last_epoch),
        int(below),
    )


def render(snap: Snapshot) -> bytes:
    """The text exposition of a snapshot and the histograms observed as they happen."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(snap))
    registry.register(_Observed())
    return generate_latest(registry)


class _Observed(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from LEASE_WAIT.collect()


class MetricsRoute:
    """`GET /metrics` for the coordinator's HTTP app. A scrape reads the database a handful of
    times: scrapes within a second of the last share its answer, so a flood of them costs the
    database one read a second."""

    def __init__(self, read: Callable[[], Awaitable[Snapshot]], every_s: float = 1.0) -> None:
        self._read = read
        self._every_s = every_s
        self._last: tuple[float, bytes] | None = None
        self._lock = asyncio.Lock()

    async def body(self) -> bytes:
        async with self._lock:
            now = time.monotonic()
            if self._last is None or now - self._last[0] >= self._every_s:
                self._last = (now, render(await self._read()))
            return self._last[1]

    @classmethod
    def of(
        cls,
        sessions: async_sessionmaker[AsyncSession],
        dispatcher: Dispatcher,
        lanes: Lanes,
        replicas: int,
    ) -> MetricsRoute:
        """The route of a coordinator: its database, its queue, its connected nodes."""
        return cls(lambda: snapshot(sessions, dispatcher.queued, set(lanes.connected()), replicas))

    def install(self, app: FastAPI) -> None:
        @app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(await self.body(), media_type=CONTENT_TYPE_LATEST)
