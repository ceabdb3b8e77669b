"""JobOutputs: parts of outputs kept for a job's readers, in order, bounded."""

from __future__ import annotations

import asyncio

from tokenweave.coordinator._outputs import JobOutputs


async def test_parts_come_in_order_from_one_run_per_task() -> None:
    outputs = JobOutputs()
    assert outputs.add("j", 0, "node-a", 0, b"The")
    assert not outputs.add("j", 0, "node-b", 0, b"Other"), "a second run of the task is silent"
    assert not outputs.add("j", 0, "node-a", 2, b"skipped"), "a part out of order is dropped"
    assert outputs.add("j", 0, "node-a", 1, b" capital")
    assert outputs.add("j", 1, "node-b", 0, b"1, 2")
    running = True

    async def still(job_id: str) -> bool:
        return running

    seen = []

    async def read() -> None:
        async for part in outputs.read("j", still, poll_s=0.05):
            seen.append((part.task, part.sequence, part.output))

    reader = asyncio.create_task(read())
    await asyncio.sleep(0.1)
    assert seen == [(0, 0, b"The"), (0, 1, b" capital"), (1, 0, b"1, 2")]
    outputs.add("j", 0, "node-a", 2, b" of")
    await asyncio.sleep(0.1)
    assert seen[-1] == (0, 2, b" of"), "a reader gets new parts as they come"
    running = False
    await asyncio.wait_for(reader, 1)
    assert [p async for p in outputs.read("j", still)] == [], "a finished job's parts are gone"


async def test_parts_are_bounded_per_part_per_job_and_in_all() -> None:
    outputs = JobOutputs(max_bytes=10, max_job_bytes=6, max_part_bytes=4)
    assert not outputs.add("a", 0, "n", 0, b"12345"), "a part past 4 bytes"
    assert outputs.add("a", 0, "n", 0, b"1234")
    assert not outputs.add("a", 0, "n", 1, b"567"), "the job past 6 bytes"
    assert outputs.add("b", 0, "n", 0, b"1234")
    assert outputs.add("c", 0, "n", 0, b"1234")  # 12 bytes in all: the oldest job goes

    async def finished(job_id: str) -> bool:
        return False

    assert [p.output async for p in outputs.read("a", finished)] == []
    assert [p.output async for p in outputs.read("c", finished)] == [b"1234"]


async def test_a_lost_runs_stream_is_handed_over_to_the_next_run() -> None:
    outputs = JobOutputs()
    assert outputs.hand_over("j", 0, "node-a") == [], "nothing streamed: the run starts over"
    assert outputs.add("j", 0, "node-a", 0, b"The")
    assert outputs.add("j", 0, "node-a", 1, b" capital")
    assert outputs.add("j", 1, "node-a", 0, b"other task")
    assert outputs.hand_over("j", 0, "node-b") == [b"The", b" capital"]
    assert not outputs.add("j", 0, "node-a", 2, b" lost"), "the lost run is silent from now on"
    assert outputs.add("j", 0, "node-b", 0, b" of")
    assert outputs.add("j", 1, "node-a", 1, b" goes on"), "its other tasks are not handed over"
    running = False

    async def still(job_id: str) -> bool:
        return running

    parts = [(p.task, p.sequence, p.output) async for p in outputs.read("j", still)]
    assert parts == [
        (0, 0, b"The"),
        (0, 1, b" capital"),
        (1, 0, b"other task"),
        (0, 2, b" of"),
        (1, 1, b" goes on"),
    ], "the new run's parts follow the lost run's, numbered on"
