"""The one place where domain errors become gRPC statuses.

`StatusInterceptor` wraps every handler: a `TokenweaveError` aborts the call with its status and
message; any other exception is logged with its traceback and reported as INTERNAL.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from tokenweave.errors import TokenweaveError

logger = logging.getLogger(__name__)


async def _abort(context: aio.ServicerContext[Any, Any], exc: Exception) -> None:
    if isinstance(exc, TokenweaveError):
        await context.abort(grpc.StatusCode[exc.status], exc.message)
    logger.exception("unhandled error in %s", type(exc).__name__, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")


def _wrap_unary(behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behaviour(request, context)
        except aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc)

    return handler


def _wrap_stream(behaviour: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        try:
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
        wrapped: Any = handler  # grpc's handlers are namedtuples; the stubs do not say so
        if handler.unary_unary is not None:
            return wrapped._replace(unary_unary=_wrap_unary(handler.unary_unary))  # type: ignore[no-any-return]
        if handler.stream_unary is not None:
            return wrapped._replace(stream_unary=_wrap_unary(handler.stream_unary))  # type: ignore[no-any-return]
        if handler.unary_stream is not None:
            return wrapped._replace(unary_stream=_wrap_stream(handler.unary_stream))  # type: ignore[no-any-return]
        if handler.stream_stream is not None:
            return wrapped._replace(stream_stream=_wrap_stream(handler.stream_stream))  # type: ignore[no-any-return]
        return handler
