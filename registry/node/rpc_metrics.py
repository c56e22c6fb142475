"""Time every client API call (``registry.v1.Registry``) and count its failures.

A ``grpc.aio.ServerInterceptor`` wraps each unary handler of the Registry service: it
observes ``registry_rpc_seconds{method}`` and, for a status other than OK,
``registry_rpc_errors_total{method,code}``. The labels stay bounded: ``method`` is the
short name of a method the service defines (gRPC answers unknown methods before any
handler runs) and ``code`` one of gRPC's 17 status code names.

Not timed: the internal Peer service (Raft traffic between nodes, a long-lived stream)
and the Watch stream, whose duration is how long a client watches, not a latency.
Install it outermost — ``grpc.aio.server(interceptors=[RpcMetrics(...), ...])`` — so
that requests refused by later interceptors (malformed ones) are counted too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from prometheus_client import Counter, Histogram

__all__ = ["SERVICE_PREFIX", "RpcMetrics", "status_name"]

SERVICE_PREFIX = "/registry.v1.Registry/"
_CODES_BY_VALUE = {code.value[0]: code for code in grpc.StatusCode}


def status_name(code: object) -> str:
    """The status code name (``"NOT_FOUND"``) of what ``ServicerContext.code()`` gives:
    a ``grpc.StatusCode``, an integer, or ``None`` (nothing set: OK)."""
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code in _CODES_BY_VALUE:
        return _CODES_BY_VALUE[code].name
    return "UNKNOWN"


class RpcMetrics(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        latency: Histogram,
        errors: Counter,
        *,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._latency = latency
        self._errors = errors
        self._clock = clock

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: Any = await continuation(handler_call_details)
        path: str = handler_call_details.method
        if handler is None or handler.unary_unary is None or not path.startswith(SERVICE_PREFIX):
            return handler  # type: ignore[no-any-return]
        method = path[len(SERVICE_PREFIX) :]
        latency = self._latency.labels(method)
        inner = handler.unary_unary
        clock = self._clock

        async def timed(request: object, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            begun = clock()
            code = "OK"
            try:
                reply = await inner(request, context)
            except asyncio.CancelledError:
                code = "CANCELLED"  # the client went away or its deadline passed
                raise
            except grpc.aio.AbortError:
                code = status_name(context.code())
                raise
            except Exception:
                code = "UNKNOWN"  # what gRPC answers for an exception a handler lets out
                raise
            else:
                code = status_name(context.code())  # a handler may set_code() and return
                return reply
            finally:
                latency.observe(clock() - begun)
                if code != "OK":
                    self._errors.labels(method, code).inc()

        return handler._replace(unary_unary=timed)  # type: ignore[no-any-return]
