"""The one place where domain errors become gRPC statuses.

`StatusInterceptor` wraps every handler: a `TokenweaveError` aborts the call with its status and
message; a database that cannot be reached (PostgreSQL down or restarting) is UNAVAILABLE, which
clients retry; any other exception is logged with its traceback and reported as INTERNAL. It
also parses requests itself, so that bytes that are not the expected message are
INVALID_ARGUMENT.

Every status message passes through `clip_status`: messages may echo what a client sent, and one
past gRPC's limit on the status trailer would turn the real error into RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from tokenweave.errors import InvalidArgumentError, TokenweaveError, clip

logger = logging.getLogger(__name__)


Context = aio.ServicerContext[Any, Any]

#: Longest status message, in UTF-8 bytes. gRPC percent-encodes the message into a trailer, at
#: most 3 bytes each, and clients refuse trailers over 8 KiB by default.
MAX_STATUS_MESSAGE_BYTES = 1024


def clip_status(message: str, limit: int = MAX_STATUS_MESSAGE_BYTES) -> str:
    """`message` as valid UTF-8 of at most `limit` bytes, with a note of how much was cut."""
    data = message.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode()
    room = limit - len(f"… ({len(data):,} more bytes cut)".encode())
    kept = data[:room].decode("utf-8", "ignore")
    return f"{kept}… ({len(data) - len(kept.encode()):,} more bytes cut)"


async def _abort_with(context: Context, code: grpc.StatusCode, message: str) -> None:
    await context.abort(code, clip_status(message))


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached now (its server down or restarting,
    the connection cut), as opposed to a query it refused: the call may succeed when retried."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, (OperationalError, InterfaceError))
    # A refused or reset connection when the pool opens a new one comes from the driver as is.
    return isinstance(exc, ConnectionError)


async def _abort(context: Context, exc: Exception) -> None:
    if isinstance(exc, TokenweaveError):
        await _abort_with(context, grpc.StatusCode[exc.status], exc.message)
    if database_unreachable(exc):
        logger.warning("database unreachable: %s: %s", type(exc).__name__, exc)
        await _abort_with(
            context,
            grpc.StatusCode.UNAVAILABLE,
            f"the coordinator cannot reach its database ({type(exc).__name__}); retry shortly",
        )
    logger.exception("unhandled error in %s", type(exc).__name__, exc_info=exc)
    await _abort_with(
        context, grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"
    )


Decoder = Callable[[bytes], Any] | None


async def _decode(decoder: Decoder, raw: Any, method: str, context: Context) -> Any:
    """Parse a request ourselves, so that garbage is INVALID_ARGUMENT rather than UNKNOWN."""
    if decoder is None:
        return raw
    try:
        return decoder(raw)
    except DecodeError as exc:
        await _abort_with(
            context, grpc.StatusCode.INVALID_ARGUMENT, f"malformed request to {method}: {exc}"
        )


async def _decoded_stream(
    decoder: Decoder, requests: AsyncIterator[Any], method: str, context: Context
) -> AsyncIterator[Any]:
    async for raw in requests:
        yield await _decode(decoder, raw, method, context)


def _wrap_unary(
    behaviour: Callable[..., Awaitable[Any]], decoder: Decoder, method: str, streaming: bool
) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: Context) -> Any:
        try:
            if streaming:
                request = _decoded_stream(decoder, request, method, context)
            else:
                request = await _decode(decoder, request, method, context)
            return await behaviour(request, context)
        except aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return handler


def _wrap_stream(
    behaviour: Callable[..., Any], decoder: Decoder, method: str, streaming: bool
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: Context) -> AsyncIterator[Any]:
        try:
            if streaming:
                request = _decoded_stream(decoder, request, method, context)
            else:
                request = await _decode(decoder, request, method, context)
            result = behaviour(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:  # a handler that writes through context.write()
                await result
        except aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return handler


class StatusInterceptor(aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        decoder = handler.request_deserializer
        streaming = handler.request_streaming
        # grpc's handlers are namedtuples (the stubs do not say so): swap in wrapped behaviours
        # and take over request parsing.
        h: Any = handler
        for kind, wrap in (
            ("unary_unary", _wrap_unary),
            ("stream_unary", _wrap_unary),
            ("unary_stream", _wrap_stream),
            ("stream_stream", _wrap_stream),
        ):
            behaviour = getattr(handler, kind)
            if behaviour is not None:
                wrapped = wrap(behaviour, decoder, method, streaming)
                return h._replace(**{kind: wrapped, "request_deserializer": None})  # type: ignore[no-any-return]
        return handler


#: Longest identifier a request may name (job, key and client ids are far shorter).
MAX_IDENTIFIER = 128


def checked_identifier(value: str, field: str) -> str:
    """`value` if it can be an identifier: printable ASCII, at most MAX_IDENTIFIER characters.
    Anything else names nothing that exists, and some of it (a NUL) PostgreSQL cannot even
    compare: it is INVALID_ARGUMENT here, before any query."""
    if len(value) > MAX_IDENTIFIER or not (value.isascii() and value.isprintable()):
        raise InvalidArgumentError(
            f"{field} {clip(value)!r} is not an identifier (printable ASCII, at most "
            f"{MAX_IDENTIFIER} characters)"
        )
    return value
