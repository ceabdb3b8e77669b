"""One process per data dir: a second coordinator or node on it stops with a clear error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tokenweave._datadir import DataDirLock, DataDirLockedError
from tokenweave.coordinator import CoordinatorConfig, CoordinatorServer
from tokenweave.node import NodeConfig, NodeDaemon

HOLD = """
import sys, time
from pathlib import Path
from tokenweave._datadir import DataDirLock
lock = DataDirLock.acquire(Path(sys.argv[1]))
print("held", flush=True)
sys.stdin.read()
"""


def test_a_second_process_is_refused_with_the_dir_and_the_holders_pid(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(DataDirLockedError) as refused:
                DataDirLock.acquire(tmp_path, "coordinator")
            assert str(tmp_path) in refused.value.message
            assert f"process {holder.pid}" in refused.value.message
        finally:
            holder.kill()
    # The kernel drops the lock with its process, killed or not: the dir is free again.
    with DataDirLock.acquire(tmp_path) as lock:
        assert lock.held
    assert not lock.held


def test_release_is_idempotent_and_frees_the_dir(tmp_path: Path) -> None:
    lock = DataDirLock.acquire(tmp_path / "new")
    with pytest.raises(DataDirLockedError, match="is in use"):
        DataDirLock.acquire(tmp_path / "new")
    lock.release()
    lock.release()
    DataDirLock.acquire(tmp_path / "new").release()


async def test_two_coordinators_on_one_data_dir(tmp_path: Path, model_cache: Path) -> None:
    def config() -> CoordinatorConfig:
        return CoordinatorConfig(
            listen="127.0.0.1:0", data_dir=tmp_path, model_cache=model_cache, shutdown_grace_s=1
        )

    first = await CoordinatorServer.create(config())
    try:
        with pytest.raises(DataDirLockedError, match=str(tmp_path)):
            await CoordinatorServer.create(config())
    finally:
        await first.shutdown()
    second = await CoordinatorServer.create(config())  # free once the first has stopped
    await second.shutdown()


async def test_a_node_on_a_held_data_dir_stops_before_any_work(tmp_path: Path) -> None:
    with DataDirLock.acquire(tmp_path), pytest.raises(DataDirLockedError, match="stop that node"):
        await NodeDaemon.create(NodeConfig(data_dir=tmp_path, models=("no-such-model",)))
    assert not (tmp_path / "node_key.json").exists()
    # A failed start leaves the dir free.
    with pytest.raises(Exception, match="no-such-model"):
        await asyncio.wait_for(
            NodeDaemon.create(NodeConfig(data_dir=tmp_path, models=("no-such-model",))), 60
        )
    DataDirLock.acquire(tmp_path).release()
