"""DatasetIndex: which datasets exist, their blocks, and which nodes hold each block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import (
    BlockProviderRow,
    DatasetBlockRow,
    DatasetRow,
    NodeRow,
    utcnow,
)
from tokenweave.errors import NotFoundError


@dataclass(frozen=True, slots=True)
class DatasetView:
    root: str
    name: str
    size: int
    blocks: int


@dataclass(frozen=True, slots=True)
class ProviderView:
    node_id: str
    peer_id: str
    multiaddrs: tuple[str, ...]


class DatasetIndex:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._db = sessions

    async def add_providers(self, cid: str, node_ids: Sequence[str]) -> None:
        if not node_ids:
            return
        async with self._db.begin() as session:
            for node_id in node_ids:
                if await session.get(BlockProviderRow, (cid, node_id)) is None:
                    session.add(BlockProviderRow(cid=cid, node_id=node_id))

    async def record(self, root: str, name: str, size: int, cids: Sequence[str]) -> DatasetView:
        async with self._db.begin() as session:
            row = await session.get(DatasetRow, root)
            if row is None:
                row = DatasetRow(
                    root=root, name=name, size=size, blocks=len(cids), created_at=utcnow()
                )
                session.add(row)
                await session.flush()
                for cid in dict.fromkeys(cids):
                    session.add(DatasetBlockRow(root=root, cid=cid))
            return DatasetView(row.root, row.name, row.size, row.blocks)

    async def providers(self, cid: str) -> list[ProviderView]:
        async with self._db() as session:
            rows = await session.scalars(
                select(NodeRow)
                .join(BlockProviderRow, BlockProviderRow.node_id == NodeRow.node_id)
                .where(BlockProviderRow.cid == cid)
                .order_by(NodeRow.node_id)
            )
            return [ProviderView(r.node_id, r.peer_id, tuple(r.multiaddrs)) for r in rows]

    async def datasets(self) -> list[DatasetView]:
        async with self._db() as session:
            rows = await session.scalars(select(DatasetRow).order_by(DatasetRow.created_at))
            return [DatasetView(r.root, r.name, r.size, r.blocks) for r in rows]

    async def status(self, root: str) -> tuple[DatasetView, list[tuple[str, list[str]]]]:
        async with self._db() as session:
            row = await session.get(DatasetRow, root)
            if row is None:
                raise NotFoundError(f"no dataset with root {root}")
            cids = list(
                await session.scalars(
                    select(DatasetBlockRow.cid).where(DatasetBlockRow.root == root)
                )
            )
            holders: dict[str, list[str]] = {cid: [] for cid in cids}
            for cid, node_id in await session.execute(
                select(BlockProviderRow.cid, BlockProviderRow.node_id).where(
                    BlockProviderRow.cid.in_(cids)
                )
            ):
                holders[cid].append(node_id)
            view = DatasetView(row.root, row.name, row.size, row.blocks)
        return view, sorted(holders.items())
