"""DatasetIndex: which datasets exist, their blocks, and which nodes hold each block."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import (
    BlockChallengeRow,
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

    async def add_providers(
        self,
        cid: str,
        node_ids: Sequence[str],
        challenges: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Record that `node_ids` hold `cid` (idempotent, safe against concurrent uploads of the
        same block), and keep audit `challenges` for it while it has fewer than that many."""
        async with self._db.begin() as session:
            for node_id in node_ids:
                try:
                    async with session.begin_nested():
                        await session.execute(
                            insert(BlockProviderRow).values(cid=cid, node_id=node_id)
                        )
                except IntegrityError:
                    pass  # already on record
            if challenges:
                held = await session.scalar(
                    select(func.count())
                    .select_from(BlockChallengeRow)
                    .where(BlockChallengeRow.cid == cid)
                )
                for nonce, proof in challenges[: max(0, len(challenges) - (held or 0))]:
                    session.add(BlockChallengeRow(cid=cid, nonce=nonce, proof=proof))

    async def provider_map(self) -> dict[str, set[str]]:
        """Every block on record and the nodes that hold it."""
        held: dict[str, set[str]] = {}
        async with self._db() as session:
            for cid, node_id in await session.execute(
                select(BlockProviderRow.cid, BlockProviderRow.node_id)
            ):
                held.setdefault(cid, set()).add(node_id)
        return held

    async def peer_addresses(self) -> dict[str, tuple[str, ...]]:
        """Each node's full multiaddrs (ending in /p2p/<peer id>), for peers to dial."""
        async with self._db() as session:
            rows = await session.scalars(select(NodeRow).where(NodeRow.peer_id != ""))
            return {r.node_id: tuple(r.multiaddrs) for r in rows}

    async def sample_holdings(self, nodes: Sequence[str], count: int) -> list[tuple[str, str]]:
        """Up to `count` random (cid, node) records among `nodes`, for audits."""
        if not nodes or count <= 0:
            return []
        async with self._db() as session:
            rows = await session.execute(
                select(BlockProviderRow.cid, BlockProviderRow.node_id)
                .where(BlockProviderRow.node_id.in_(nodes))
                .order_by(func.random())
                .limit(count)
            )
            return [(cid, node_id) for cid, node_id in rows]

    async def take_challenge(self, cid: str) -> tuple[bytes, bytes] | None:
        """An unused (nonce, expected proof) for `cid`, removed so that it is asked only once."""
        async with self._db.begin() as session:
            row = await session.scalar(
                select(BlockChallengeRow).where(BlockChallengeRow.cid == cid).limit(1)
            )
            if row is None:
                return None
            await session.execute(delete(BlockChallengeRow).where(BlockChallengeRow.id == row.id))
            return row.nonce, row.proof

    async def record(
        self, root: str, name: str, size: int, cids: Sequence[str], owner: str = ""
    ) -> DatasetView:
        """Record an upload (the first upload of a root is the one kept, with its owner)."""
        async with self._db.begin() as session:
            row = await session.get(DatasetRow, root)
            if row is None:
                row = DatasetRow(
                    root=root,
                    name=name,
                    size=size,
                    blocks=len(cids),
                    created_at=utcnow(),
                    owner=owner,
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

    async def datasets(self, owner: str | None = None) -> list[DatasetView]:
        """Every dataset, or `owner`'s."""
        query = select(DatasetRow).order_by(DatasetRow.created_at)
        if owner is not None:
            query = query.where(DatasetRow.owner == owner)
        async with self._db() as session:
            return [
                DatasetView(r.root, r.name, r.size, r.blocks) for r in await session.scalars(query)
            ]

    async def stored_bytes(self, owner: str) -> int:
        """Bytes of the datasets `owner` uploaded."""
        async with self._db() as session:
            total = await session.scalar(
                select(func.coalesce(func.sum(DatasetRow.size), 0)).where(DatasetRow.owner == owner)
            )
        return int(total or 0)

    async def status(self, root: str) -> tuple[DatasetView, list[tuple[str, list[str]]]]:
        """The dataset and, for each of its blocks, the nodes on record as holding it."""
        async with self._db() as session:
            row = await session.get(DatasetRow, root)
            if row is None:
                raise NotFoundError(f"no dataset with root {root}")
            cids = await session.scalars(
                select(DatasetBlockRow.cid).where(DatasetBlockRow.root == root)
            )
            holders: dict[str, list[str]] = {cid: [] for cid in cids}
            for cid, node_id in await session.execute(
                select(BlockProviderRow.cid, BlockProviderRow.node_id)
                .join(DatasetBlockRow, DatasetBlockRow.cid == BlockProviderRow.cid)
                .where(DatasetBlockRow.root == root)
                .order_by(BlockProviderRow.node_id)
            ):
                holders[cid].append(node_id)
            view = DatasetView(row.root, row.name, row.size, row.blocks)
        return view, sorted(holders.items())
