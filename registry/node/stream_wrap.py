"""Wrapping a server-streaming gRPC handler in an interceptor, in either of its styles.

grpc.aio tells the two styles apart by the handler function itself: an async generator
(``yield`` each message; the registry's Watch) is iterated, a coroutine that writes
through ``context.write`` (grpc's own health ``Watch``) is awaited. A wrapper must keep
the style of what it wraps, or the server fails the call with "'async for' requires an
object with __aiter__ method, got coroutine"."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["around_stream"]

Enter = Callable[[Any], Awaitable[object]]
Leave = Callable[[object], None]


def around_stream(stream: Any, enter: Enter, leave: Leave | None = None) -> Any:
    """``stream`` with ``enter(context)`` awaited first and ``leave(token)`` (``token``:
    what ``enter`` returned) run after it ends, however it ends."""
    if inspect.isasyncgenfunction(getattr(stream, "__func__", stream)):

        async def generator(request: object, context: Any) -> AsyncIterator[Any]:
            token = await enter(context)
            try:
                async for item in stream(request, context):
                    yield item
            finally:
                if leave is not None:
                    leave(token)

        return generator

    async def coroutine(request: object, context: Any) -> Any:
        token = await enter(context)
        try:
            return await stream(request, context)
        finally:
            if leave is not None:
                leave(token)

    return coroutine
