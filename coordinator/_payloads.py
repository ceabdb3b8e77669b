"""Payloads: tasks' payloads, large ones kept as files beside the database, not in it.

A payload is written once and read when its shard is leased (again after a failure). In SQLite a
blob of megabytes costs far more than the file system: a 28 MB inference request took 200–400 ms
to insert and as much to read back. Payloads past `SPILL_BYTES` are written to
`<dir>/<job id>/<shard index>` before the job's rows are stored (the row keeps `external=True`
and no bytes), read back when leased, and removed with the job's folder when the job ends —
succeeded, failed or cancelled; a later stage's and a re-run's payloads are read while it runs.
Files are written whole to a temporary name and renamed, like the database's own writes not
fsynced one by one: a payload lost in a crash fails its job, with a message that says so.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tokenweave.coordinator._db import ShardPayloadRow, ShardRow, chunked
from tokenweave.errors import FailedPreconditionError, NotFoundError, clip

#: Payloads of more bytes than this are kept as files.
SPILL_BYTES = 1 << 20


class Payloads:
    """Where tasks' payloads live: rows of the database, files for large ones (`root`; None:
    the database only)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], root: Path | None) -> None:
        self._sessions = sessions
        self._root = root

    async def spill(self, rows: Sequence[ShardRow]) -> None:
        """Write the large payloads of new shard rows to files; the rows keep none."""
        if self._root is not None:
            await asyncio.to_thread(self._spill, self._root, rows)

    @staticmethod
    def _spill(root: Path, rows: Sequence[ShardRow]) -> None:
        for row in rows:
            payload = row.payload_row
            if len(payload.payload) <= SPILL_BYTES:
                continue
            path = root / row.job_id / str(row.index)
            path.parent.mkdir(parents=True, exist_ok=True)
            staged = path.with_suffix(".part")
            staged.write_bytes(payload.payload)
            os.replace(staged, path)
            payload.payload = b""
            payload.external = True

    async def read(self, shard_id: str) -> bytes:
        """What a shard's node is sent (kept here, not in memory, until then)."""
        found = (await self.read_many([shard_id]))[shard_id]
        if isinstance(found, Exception):
            raise found
        return found

    async def read_many(self, shard_ids: Sequence[str]) -> dict[str, bytes | Exception]:
        """Each shard's payload, read in one statement (a thousand at a time), or the error
        that says why it cannot be: no such shard, or its file lost."""
        rows: list[Any] = []
        async with self._sessions() as session:
            for chunk in chunked(shard_ids):
                rows += (
                    await session.execute(
                        select(ShardPayloadRow.shard_id, ShardPayloadRow.payload,
                               ShardPayloadRow.external, ShardRow.job_id, ShardRow.index)
                        .join(ShardRow, ShardRow.shard_id == ShardPayloadRow.shard_id)
                        .where(ShardPayloadRow.shard_id.in_(chunk))
                    )
                ).all()  # fmt: skip
        found: dict[str, bytes | Exception] = {
            shard_id: NotFoundError(f"no shard with id {clip(shard_id)}") for shard_id in shard_ids
        }
        files = []
        for shard_id, payload, external, job_id, index in rows:
            if external and self._root is not None:
                files.append((shard_id, job_id, index))
            else:
                found[shard_id] = bytes(payload)
        if files:
            found.update(await asyncio.to_thread(self._read_files, self._root, files))
        return found

    @staticmethod
    def _read_files(
        root: Path | None, files: list[tuple[str, str, int]]
    ) -> dict[str, bytes | Exception]:
        assert root is not None
        read: dict[str, bytes | Exception] = {}
        for shard_id, job_id, index in files:
            try:
                read[shard_id] = (root / job_id / str(index)).read_bytes()
            except FileNotFoundError:
                read[shard_id] = FailedPreconditionError(
                    f"the payload of task {index} of job {job_id} is gone (lost in a crash?)"
                )
        return read

    async def forget(self, job_id: str) -> None:
        """The job ended: its payload files go."""
        if self._root is not None:
            await asyncio.to_thread(shutil.rmtree, self._root / job_id, True)
