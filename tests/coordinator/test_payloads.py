"""Payloads: large ones kept as files beside the database, read back whole, gone with their job."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenweave.coordinator._db import JobRow, ShardRow, open_database, utcnow
from tokenweave.coordinator._payloads import SPILL_BYTES, Payloads
from tokenweave.coordinator._planned import shard_row
from tokenweave.errors import FailedPreconditionError, NotFoundError
from tokenweave.workloads import TaskPlan


async def test_large_payloads_are_files_and_leave_with_their_job(tmp_path: Path) -> None:
    engine, sessions = await open_database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    payloads = Payloads(sessions, tmp_path / "payloads")
    big, small = b"x" * (SPILL_BYTES + 1), b"small"
    rows = [
        shard_row("job1", i, 0, TaskPlan(1, p, b"{}"), None) for i, p in enumerate((big, small))
    ]
    await payloads.spill(rows)
    assert (rows[0].payload_row.external, rows[0].payload_row.payload) == (True, b"")
    assert not rows[1].payload_row.external
    now = utcnow()
    async with sessions.begin() as session:
        session.add(JobRow(job_id="job1", model="m", model_sha256="", workload="w", state="running",
                           options={}, documents=1, tokens=2, items=2, shards_total=2,
                           created_at=now, started_at=None, finished_at=None))  # fmt: skip
        await session.flush()
        session.add_all(rows)
    assert await payloads.read("job1-0") == big
    assert await payloads.read("job1-1") == small
    assert (tmp_path / "payloads" / "job1" / "0").stat().st_size == len(big)
    with pytest.raises(NotFoundError):
        await payloads.read("job1-9")
    await payloads.forget("job1")
    assert not (tmp_path / "payloads" / "job1").exists()
    with pytest.raises(FailedPreconditionError, match="payload of task 0 of job job1 is gone"):
        await payloads.read("job1-0")
    assert await payloads.read("job1-1") == small, "small ones stay in the database"
    async with sessions() as session:
        assert (await session.get(ShardRow, "job1-0")) is not None
    await engine.dispose()
