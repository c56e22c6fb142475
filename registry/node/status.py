"""The one place where errors become gRPC status codes (house rule 9).

Redirects travel as trailing metadata (``registry-leader``, ``registry-owner``: an
``id@host:port`` value) so that clients can follow them without extra protos.

Every refusal that a status code alone leaves ambiguous carries a machine-readable
reason in ``registry-reason`` (``trailers_for``):

==================  ===================  =============================================
reason              status               refused because
==================  ===================  =============================================
NOSPACE             RESOURCE_EXHAUSTED   this node's disk is below its reserve
PAYLOAD_TOO_LARGE   RESOURCE_EXHAUSTED   a payload/args over ``max_payload_bytes``
ENTRY_TOO_LARGE     RESOURCE_EXHAUSTED   the log entry over ``max_entry_bytes``
MAILBOX_FULL        RESOURCE_EXHAUSTED   the activation's mailbox is at its bound
TOO_MANY_RPCS       RESOURCE_EXHAUSTED   ``max_concurrent_rpcs``/``max_rpcs_per_client``
TOO_MANY_WATCHES    RESOURCE_EXHAUSTED   ``max_watch_streams``
FANOUT_TOO_LARGE    RESOURCE_EXHAUSTED   group size × payload over ``max_fanout_bytes``
==================  ===================  =============================================
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from registry.core.errors import LimitExceeded, NotLeader, ProposalRejected, RegistryError
from registry.core.state import Code

CODE_TO_STATUS = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.STALE: grpc.StatusCode.ABORTED,
}

LEADER_KEY = "registry-leader"
OWNER_KEY = "registry-owner"
REASON_KEY = "registry-reason"
"""A machine-readable reason for a refusal, where the status code alone is ambiguous
(``NOSPACE``: RESOURCE_EXHAUSTED because this node's disk is full, not a large payload)."""
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
ENTRY_TOO_LARGE = "ENTRY_TOO_LARGE"
MAILBOX_FULL = "MAILBOX_FULL"
TOO_MANY_RPCS = "TOO_MANY_RPCS"
TOO_MANY_WATCHES = "TOO_MANY_WATCHES"
FANOUT_TOO_LARGE = "FANOUT_TOO_LARGE"


class Abort(Exception):
    """Raised inside a servicer to end the RPC with ``code`` and ``message``."""

    def __init__(
        self, code: grpc.StatusCode, message: str, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.metadata = metadata


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """Map a known error to a status; anything else is INTERNAL with its type named."""
    if isinstance(exc, Abort):
        return exc.code, exc.message
    # Imported here: the worker package is optional for the core-facing parts.
    from registry.worker.errors import CallTimeout, NoLease, NotHere, WorkerFailed

    if isinstance(exc, LimitExceeded):
        return grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
    if isinstance(exc, NotLeader):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, NoLease):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, NotHere):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, CallTimeout | TimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED, str(exc) or "timed out"
    if isinstance(exc, WorkerFailed):
        return grpc.StatusCode.ABORTED, str(exc)
    if isinstance(exc, ProposalRejected | RegistryError):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}): {exc}"


def trailers_for(exc: BaseException) -> tuple[tuple[str, str], ...]:
    """The trailing metadata that goes with ``status_for(exc)``: redirects and reasons."""
    if isinstance(exc, Abort):
        return exc.metadata
    if isinstance(exc, LimitExceeded):
        return ((REASON_KEY, exc.reason),)
    return ()


class MalformedRequests(grpc.aio.ServerInterceptor):
    """Answer requests that do not parse — a string field holding bytes that are not
    UTF-8, a truncated field — with ``INVALID_ARGUMENT`` instead of gRPC's ``UNKNOWN``
    and a logged traceback (G7).

    Protobuf refuses such strings before any servicer code runs, so this wraps each
    handler's request deserializer: a request that does not decode becomes a marker, and
    the handler answers it with the parse error without calling the servicer. Install it
    with ``grpc.aio.server(interceptors=[MalformedRequests()])``.
    """

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: Any = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler  # type: ignore[no-any-return]
        decode = handler.request_deserializer

        def lenient(data: bytes) -> object:
            try:
                return decode(data)
            except DecodeError as exc:
                return _Undecodable(str(exc))

        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(
                request: object, context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                if isinstance(request, _Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                return await unary(request, context)

            return handler._replace(  # type: ignore[no-any-return]
                request_deserializer=lenient, unary_unary=unary_unary
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            async def unary_stream(
                request: object, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                if isinstance(request, _Undecodable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
                async for item in stream(request, context):
                    yield item

            return handler._replace(  # type: ignore[no-any-return]
                request_deserializer=lenient, unary_stream=unary_stream
            )
        return handler  # type: ignore[no-any-return]  # client streams: peers only


class _Undecodable:
    def __init__(self, error: str) -> None:
        self.message = f"malformed request: {error}"
