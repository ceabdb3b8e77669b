"""The one exception hierarchy of tokenweave, shared by servers and the SDK.

    TokenweaveError                     root; carries the gRPC status name it maps to
    ├── InvalidArgumentError            a request field is wrong (INVALID_ARGUMENT)
    ├── NotFoundError                   a job, node or model does not exist (NOT_FOUND)
    ├── FailedPreconditionError         the request is valid but not now (FAILED_PRECONDITION)
    │   └── JobFailedError              a job waited for ended FAILED or CANCELLED
    ├── PermissionDeniedError           the caller may not do this (PERMISSION_DENIED)
    ├── UnauthenticatedError            a bad signature or session token (UNAUTHENTICATED)
    ├── ResourceExhaustedError          a size or capacity limit (RESOURCE_EXHAUSTED)
    ├── UnavailableError                the service cannot be reached now (UNAVAILABLE)
    ├── DeadlineExceededError           no answer in time (DEADLINE_EXCEEDED)
    └── InternalError                   a bug or a broken invariant (INTERNAL)

Domain code raises these; the coordinator's interceptor turns them into gRPC statuses, and the SDK
turns statuses back into the same classes. Status names are plain strings here so that domain
code never imports grpc.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "InternalError",
    "InvalidArgumentError",
    "JobFailedError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "TokenweaveError",
    "UnauthenticatedError",
    "UnavailableError",
    "clip",
    "error_for_status",
]


class TokenweaveError(Exception):
    """Root of every error tokenweave raises on purpose."""

    status: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgumentError(TokenweaveError, ValueError):
    status = "INVALID_ARGUMENT"


class NotFoundError(TokenweaveError, LookupError):
    status = "NOT_FOUND"


class FailedPreconditionError(TokenweaveError):
    status = "FAILED_PRECONDITION"


class JobFailedError(FailedPreconditionError):
    """A job the caller waited for ended FAILED or CANCELLED (the CLI exits 5)."""


class AlreadyExistsError(TokenweaveError):
    status = "ALREADY_EXISTS"


class PermissionDeniedError(TokenweaveError):
    status = "PERMISSION_DENIED"


class UnauthenticatedError(TokenweaveError):
    status = "UNAUTHENTICATED"


class ResourceExhaustedError(TokenweaveError):
    status = "RESOURCE_EXHAUSTED"


class UnavailableError(TokenweaveError):
    status = "UNAVAILABLE"


class DeadlineExceededError(TokenweaveError):
    """No answer in time: the coordinator is overloaded, or the network lost the call."""

    status = "DEADLINE_EXCEEDED"


class InternalError(TokenweaveError):
    status = "INTERNAL"


_BY_STATUS: dict[str, type[TokenweaveError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        FailedPreconditionError,
        AlreadyExistsError,
        PermissionDeniedError,
        UnauthenticatedError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
        InternalError,
    )
}


def clip(value: object, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: error messages must not echo huge inputs."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_for_status(status: str, message: str) -> TokenweaveError:
    """The exception for a gRPC status name such as "NOT_FOUND"."""
    return _BY_STATUS.get(status, TokenweaveError)(message)
