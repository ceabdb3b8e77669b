"""Prefetcher: leaves fetched ahead of a DAG's walk, at most a window at once, same bytes."""

from __future__ import annotations

import io
import random
import threading
import time

from tokenweave.storage import CID, RAW, ImportProfile, Prefetcher, import_file, read_file

TINY = ImportProfile("tiny", 64, 4)


def test_the_walk_reads_the_same_bytes_with_leaves_fetched_ahead() -> None:
    blocks: dict[CID, bytes] = {}
    data = random.Random(1).randbytes(2048)  # 32 distinct leaves under nodes of width 4
    root = import_file(io.BytesIO(data), lambda b: blocks.__setitem__(b.cid, b.data), TINY).cid
    fetched: list[CID] = []
    busy = 0
    most = 0
    lock = threading.Lock()

    def slow(cid: CID) -> bytes:
        nonlocal busy, most
        with lock:
            busy += 1
            most = max(most, busy)
            fetched.append(cid)
        time.sleep(0.01)
        with lock:
            busy -= 1
        return blocks[cid]

    started = time.perf_counter()
    with Prefetcher(slow, window=4) as ahead:
        assert b"".join(read_file(root, ahead)) == data
    elapsed = time.perf_counter() - started
    assert sorted(map(str, fetched)) == sorted(map(str, blocks)), "every block once"
    assert 1 < most <= 4, "leaves in parallel, within the window"
    assert elapsed < 0.01 * len(blocks), "faster than one block at a time"
    assert sum(c.codec == RAW for c in fetched) == 32
