"""Errors raised by tokenweave.models, placed in tokenweave's one hierarchy.

TokenweaveError
├── NotFoundError
│   └── UnknownModelError           a model name that is not in the registry
└── FailedPreconditionError
    └── ModelCacheError             a prepared model on disk is unusable
        └── ModelHashMismatchError  a file's sha256 is not the one expected
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenweave.errors import FailedPreconditionError, NotFoundError


class UnknownModelError(NotFoundError):
    """A model name that the registry does not know."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        super().__init__(f"unknown model {name!r}; known models: {', '.join(self.known)}")


class ModelCacheError(FailedPreconditionError):
    """A prepared model directory is incomplete, unreadable or disagrees with the registry."""


class ModelHashMismatchError(ModelCacheError):
    """A cached file's sha256 differs from its manifest or from the hash the caller expected."""

    def __init__(self, path: Path, expected: str, actual: str) -> None:
        self.path = path
        self.expected = expected
        self.actual = actual
        super().__init__(f"sha256 mismatch for {path}: expected {expected}, got {actual}")
