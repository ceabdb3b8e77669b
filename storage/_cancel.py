"""CancelFlag: how a long read (a dataset read for a job, a download) is told to stop.

The reader checks the flag before every block, and a block fetch in flight is cut short when the
flag is set (`BlockExchange.fetch(..., cancel=flag)`). Setting it is thread-safe and idempotent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tokenweave.errors import UnavailableError


class ReadCancelledError(UnavailableError):
    """The read was cancelled: its caller went away, its deadline passed, or the server stops."""


class CancelFlag:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reason = ""
        self._set = False
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._set

    def cancel(self, reason: str = "the read was cancelled") -> None:
        with self._lock:
            if self._set:
                return
            self._set, self._reason = True, reason
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def check(self) -> None:
        """Raise ReadCancelledError once the flag is set."""
        if self._set:
            raise ReadCancelledError(self._reason)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` when the flag is set (at once if it is); returns an unregister."""
        with self._lock:
            if not self._set:
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        callback()
        return lambda: None

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
