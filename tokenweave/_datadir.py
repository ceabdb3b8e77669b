"""DataDirLock: one process at a time on a data directory.

Two coordinators on one data dir would each settle rewards on their own chain; two nodes would
share one key and one block store. The process that starts first holds an exclusive `flock` on
`<data_dir>/lock` for its lifetime (the kernel drops it when the process dies, even by SIGKILL,
so a stale file never locks anyone out), and writes its pid there for the next one's error.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from tokenweave.errors import FailedPreconditionError

LOCK_NAME = "lock"


class DataDirLockedError(FailedPreconditionError):
    """Another process holds the data directory."""


class DataDirLock:
    """`DataDirLock.acquire(data_dir)` or raise `DataDirLockedError`; `release()` is idempotent."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path, what: str = "process") -> DataDirLock:
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            by = f" by process {holder}" if holder else ""
            raise DataDirLockedError(
                f"data dir {data_dir} is in use{by} (locked through {path}); stop that {what} "
                f"or give this one another --data-dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the last descriptor drops the flock

    def __enter__(self) -> DataDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
