"""Files that land whole or not at all, and their sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of the file at ``path``, read in chunks."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    """The file's sha256, which must be `expected` (ModelHashMismatchError otherwise;
    ModelCacheError when the file is missing)."""
    from tokenweave.models._errors import ModelCacheError, ModelHashMismatchError

    if not path.is_file():
        raise ModelCacheError(f"{path} is missing; delete {path.parent} and prepare it again")
    actual = sha256_file(path)
    if actual != expected:
        raise ModelHashMismatchError(path, expected, actual)
    return actual


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one.

    The bytes go to a temporary file in the same directory, are fsynced, and the file is renamed
    over ``path``; the directory is fsynced too so that the rename survives a crash.
    """
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fchmod(file.fileno(), 0o644)
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
