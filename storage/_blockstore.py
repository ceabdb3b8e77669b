"""BlockStore: blocks on a node's disk, named by CID, checked on every read.

* Writes are atomic: a temp file in the store, fsync, rename; a crash leaves the old state or
  the new, never a torn block.
* A block's file name is derived from its CID's digest only (`blocks/ab/<base32 CID>`), so no
  name, however crafted, can point outside the store.
* Every read re-hashes the bytes; a corrupted block raises `CorruptBlockError` and is moved aside
  (`quarantine/`) so that it can be fetched again from a peer.
* Pins protect blocks from `collect_garbage()`; a size quota refuses writes beyond it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from pathlib import Path

from tokenweave.errors import NotFoundError, ResourceExhaustedError, TokenweaveError
from tokenweave.storage._cid import CID

#: Blocks larger than this are refused (IPFS's bitswap limit is 2 MiB; our chunks are ≤ 1 MiB).
MAX_BLOCK_BYTES = 2 * 1024 * 1024


class CorruptBlockError(TokenweaveError):
    """A stored block's bytes do not hash to its CID."""

    status = "DATA_LOSS"


class BlockStore:
    def __init__(self, root: Path, quota_bytes: int | None = None) -> None:
        self.root = root
        self.quota_bytes = quota_bytes
        self._blocks = root / "blocks"
        self._quarantine = root / "quarantine"
        self._pins_file = root / "pins.json"
        for folder in (self._blocks, self._quarantine):
            folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._pins: set[str] = (
            set(json.loads(self._pins_file.read_text())) if self._pins_file.exists() else set()
        )
        self._used = sum(p.stat().st_size for p in self._blocks.glob("*/*") if p.is_file())

    def _path(self, cid: CID) -> Path:
        name = str(cid)  # base32 of the CID's bytes: [a-z2-7] only, no separators
        return self._blocks / name[-2:] / name

    @property
    def used_bytes(self) -> int:
        return self._used

    def has(self, cid: CID) -> bool:
        return self._path(cid).exists()

    def put(self, cid: CID, data: bytes) -> bool:
        """Store `data` under `cid` after checking it; False if it was already there."""
        if len(data) > MAX_BLOCK_BYTES:
            raise ResourceExhaustedError(
                f"block {cid} is {len(data)} bytes; blocks are at most {MAX_BLOCK_BYTES}"
            )
        if not cid.verify(data):
            raise CorruptBlockError(f"refusing block {cid}: its bytes do not hash to its CID")
        path = self._path(cid)
        with self._lock:
            if path.exists():
                return False
            if self.quota_bytes is not None and self._used + len(data) > self.quota_bytes:
                raise ResourceExhaustedError(
                    f"block store {self.root} is full: {self._used} of {self.quota_bytes} bytes "
                    f"used, block {cid} needs {len(data)}"
                )
            path.parent.mkdir(exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            self._used += len(data)
            return True

    def get(self, cid: CID) -> bytes:
        path = self._path(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"block {cid} is not in this store") from None
        if not cid.verify(data):
            with self._lock, contextlib.suppress(FileNotFoundError):
                os.replace(path, self._quarantine / path.name)
                self._used -= len(data)
            raise CorruptBlockError(f"block {cid} is corrupt on disk; moved to quarantine")
        return data

    def pin(self, cid: CID) -> None:
        with self._lock:
            self._pins.add(str(cid))
            self._save_pins()

    def unpin(self, cid: CID) -> None:
        with self._lock:
            self._pins.discard(str(cid))
            self._save_pins()

    def pinned(self, cid: CID) -> bool:
        return str(cid) in self._pins

    def _save_pins(self) -> None:
        tmp = self._pins_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(self._pins)))
        os.replace(tmp, self._pins_file)

    def collect_garbage(self) -> int:
        """Delete every unpinned block; returns the bytes freed."""
        freed = 0
        with self._lock:
            for path in self._blocks.glob("*/*"):
                if path.name.startswith(".tmp-"):
                    path.unlink()
                elif path.name not in self._pins:
                    freed += path.stat().st_size
                    path.unlink()
            self._used -= freed
        return freed
