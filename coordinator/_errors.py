"""The one place where domain errors become gRPC statuses.

`StatusInterceptor` wraps every handler: a `TokenweaveError` aborts the call with its status and
message; any other exception is logged with its traceback and reported as INTERNAL. It also parses
requests itself, so that bytes that are not the expected message are INVALID_ARGUMENT.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from tokenweave.errors import TokenweaveError

logger = logging.getLogger(__name__)


Context = aio.ServicerContext[Any, Any]


async def _abort(context: Context, exc: Exception) -> None:
    if isinstance(exc, TokenweaveError):
        await context.abort(grpc.StatusCode[exc.status], exc.message)
    logger.exception("unhandled error in %s", type(exc).__name__, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


Decoder = Callable[[bytes], Any] | None


async def _decode(decoder: Decoder, raw: Any, method: str, context: Context) -> Any:
    """Parse a request ourselves, so that garbage is INVALID_ARGUMENT rather than UNKNOWN."""
    if decoder is None:
        return raw
    try:
        return decoder(raw)
    except DecodeError as exc:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"malformed request to {method}: {exc}"
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
