"""Prefetcher: a DAG's leaves fetched ahead of the reader that walks it, a few at a time.

`read_file` and `export` walk a DAG in order, one block at a time; over the network each block
is a round trip. Wrapped in a `Prefetcher`, the block source sees every interior block as it is
read and starts fetching the leaves it links to, in order, at most `window` at once; the walk
then finds them fetched or in flight. Memory stays bounded by the window (leaves are dropped as
they are read), and every block is still checked by the `fetch` given (the exchange checks it
against its CID; the exporter against its declared size).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from tokenweave.errors import InvalidArgumentError
from tokenweave.storage._cid import CID, DAG_PB, RAW
from tokenweave.storage._dagpb import MalformedNodeError, decode_node

#: Leaves fetched at once by default.
WINDOW = 8


class Prefetcher:
    def __init__(self, fetch: Callable[[CID], bytes], window: int = WINDOW) -> None:
        self._fetch = fetch
        self._window = window
        self._pool = ThreadPoolExecutor(window, thread_name_prefix="prefetch")
        self._queue: deque[CID] = deque()
        self._pending: dict[CID, Future[bytes]] = {}
        self._lock = threading.Lock()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._queue.clear()
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __call__(self, cid: CID) -> bytes:
        """The block (a `BlockSource`): fetched ahead if it was linked, else now."""
        with self._lock:
            future = self._pending.pop(cid, None)
        block = future.result() if future is not None else self._fetch(cid)
        if cid.codec == DAG_PB:
            self._saw(block)
        self._fill()
        return block

    def _saw(self, block: bytes) -> None:
        try:
            links = decode_node(block).links
        except (MalformedNodeError, InvalidArgumentError):
            return  # the reader reports it
        with self._lock:
            self._queue.extend(link.cid for link in links if link.cid.codec == RAW)

    def _fill(self) -> None:
        with self._lock:
            while self._queue and len(self._pending) < self._window:
                cid = self._queue.popleft()
                if cid not in self._pending:
                    self._pending[cid] = self._pool.submit(self._fetch, cid)
