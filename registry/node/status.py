"""The one place where errors become gRPC status codes (house rule 9).

Every refusal carries a stable machine-readable reason and, where one applies, the
leader or owner to go to, as ``google.rpc.Status`` details (``ErrorInfo``, ``RetryInfo``,
``registry.v1.Redirect``) plus the legacy ``registry-*`` trailers; see
``registry.wire.errors`` for the encoding and ``docs/protocol.md`` for the reasons.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from google.protobuf.message import DecodeError

from registry.core.errors import LimitExceeded, NotLeader, ProposalRejected, RegistryError
from registry.core.state import Code
from registry.wire import errors as wire
from registry.wire.errors import LEADER_KEY, OWNER_KEY, REASON_KEY

__all__ = [
    "CODE_TO_STATUS",
    "LEADER_KEY",
    "OWNER_KEY",
    "REASON_KEY",
    "Abort",
    "MalformedRequests",
    "Refusal",
    "refusal_for",
    "relayed",
    "status_for",
]

CODE_TO_STATUS = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Code.STALE: grpc.StatusCode.ABORTED,
}
CODE_TO_REASON = {
    Code.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    Code.ALREADY_EXISTS: "NAME_TAKEN",
    Code.NOT_FOUND: "NOT_FOUND",
    Code.FAILED_PRECONDITION: "NO_HOST",
    Code.UNAVAILABLE: "NO_MEMBERS",
    Code.STALE: "STALE_TOKEN",
}
"""The reason of a core ``Result`` that names none (``Result.reason`` wins)."""
_CODE_REASON = {
    grpc.StatusCode.INVALID_ARGUMENT: "INVALID_ARGUMENT",
    grpc.StatusCode.ALREADY_EXISTS: "NAME_TAKEN",
    grpc.StatusCode.NOT_FOUND: "NOT_FOUND",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "PAYLOAD_TOO_LARGE",
    grpc.StatusCode.DEADLINE_EXCEEDED: "WORKER_TIMEOUT",
    grpc.StatusCode.ABORTED: "WORKER_ERROR",
    grpc.StatusCode.UNAVAILABLE: "NOT_RUN",
}
# gRPC library texts (not ours) that say a forward never connected: nothing was sent.
_NEVER_CONNECTED = (
    "failed to connect",
    "connection refused",
    "connect failed",
    "dns resolution failed",
    "name resolution",
    "no route to host",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """A status to answer with: code, message, reason and redirects."""

    code: grpc.StatusCode
    message: str
    reason: str
    leader: tuple[str, str] | None = None
    owner: tuple[str, str] | None = None

    def trailers(self, node: str = "") -> tuple[tuple[str, str | bytes], ...]:
        """The trailing metadata that carries this refusal's details."""
        value: int = self.code.value[0]
        return wire.encode(
            value, self.message, self.reason, leader=self.leader, owner=self.owner, node=node
        )


PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
ENTRY_TOO_LARGE = "ENTRY_TOO_LARGE"
MAILBOX_FULL = "MAILBOX_FULL"
TOO_MANY_RPCS = "TOO_MANY_RPCS"
TOO_MANY_WATCHES = "TOO_MANY_WATCHES"
FANOUT_TOO_LARGE = "FANOUT_TOO_LARGE"


class Abort(Exception):
    """Raised inside a servicer to end the RPC with ``code`` and ``message``, a
    machine-readable ``reason`` (derived from the code if empty) and redirects."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        *,
        reason: str = "",
        leader: tuple[str, str] | None = None,
        owner: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.refusal = Refusal(
            code=code,
            message=message,
            reason=reason or _CODE_REASON.get(code, "INTERNAL"),
            leader=leader,
            owner=owner,
        )

    @staticmethod
    def result(code: Code, message: str, reason: str = "") -> Abort:
        """The Abort for a core ``Result`` that refused a command."""
        return Abort(CODE_TO_STATUS[code], message, reason=reason or CODE_TO_REASON[code])


def relayed(
    exc: grpc.aio.AioRpcError,
    *,
    leader: tuple[str, str] | None = None,
    owner: tuple[str, str] | None = None,
) -> Abort:
    """The Abort that passes on the answer of a node this one forwarded to (its reason
    and redirects kept), naming ``leader`` or ``owner`` (the node forwarded to) unless
    that answer named one itself. A failure without details is the hop's transport:
    ``UNREACHABLE`` if it never connected, else ``CONNECTION_LOST`` (or the code's)."""
    details = wire.decode(tuple(exc.trailing_metadata() or ()))
    message = exc.details() or ""
    reason = details.reason
    if not reason:
        never = any(m in message.lower() for m in _NEVER_CONNECTED)
        if exc.code() is grpc.StatusCode.UNAVAILABLE:
            reason = "UNREACHABLE" if never else "CONNECTION_LOST"
            message = hop_failed(message, never, leader=leader, owner=owner)
        else:
            reason = _CODE_REASON.get(exc.code(), "INTERNAL")
    return Abort(
        exc.code(),
        message,
        reason=reason,
        leader=details.leader or leader,
        owner=details.owner or owner,
    )


def hop_failed(
    transport: str,
    never_connected: bool,
    *,
    leader: tuple[str, str] | None = None,
    owner: tuple[str, str] | None = None,
) -> str:
    """What a person can act on when the hop itself failed: which node, and whether the
    request may have reached it (gRPC's own words kept in parentheses)."""
    role, node = ("leader", leader) if leader is not None else ("owner", owner)
    if node is None:
        return transport
    where = f"{role} {node[0]} at {node[1]}"
    if never_connected:
        return f"{where} is unreachable ({transport}); nothing reached it: retry"
    return (
        f"the connection to {where} broke after the request was sent ({transport}); "
        "it may have been applied: check before sending it again"
    )


def refusal_for(exc: BaseException) -> Refusal:
    """Map a known error to a refusal; anything else is INTERNAL with its type named."""
    if isinstance(exc, Abort):
        return exc.refusal
    # Imported here: the worker package is optional for the core-facing parts.
    from registry.worker.errors import CallTimeout, NoLease, NotHere, WorkerFailed

    unavailable = grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, LimitExceeded):
        return Refusal(code=grpc.StatusCode.RESOURCE_EXHAUSTED, message=str(exc), reason=exc.reason)
    if isinstance(exc, NotLeader):
        reason = "NOT_LEADER" if exc.leader else "NO_QUORUM"
        return Refusal(code=unavailable, message=str(exc), reason=reason)
    if isinstance(exc, NoLease):
        return Refusal(code=unavailable, message=str(exc), reason="NO_LEASE")
    if isinstance(exc, NotHere):
        return Refusal(code=unavailable, message=str(exc), reason="MOVING")
    if isinstance(exc, CallTimeout | TimeoutError):
        message = str(exc) or "timed out"
        return Refusal(
            code=grpc.StatusCode.DEADLINE_EXCEEDED, message=message, reason="WORKER_TIMEOUT"
        )
    if isinstance(exc, WorkerFailed):
        return Refusal(code=grpc.StatusCode.ABORTED, message=str(exc), reason="WORKER_ERROR")
    if isinstance(exc, ProposalRejected | RegistryError):
        return Refusal(code=unavailable, message=str(exc), reason="NOT_RUN")
    message = f"internal error ({type(exc).__name__}): {exc}"
    return Refusal(code=grpc.StatusCode.INTERNAL, message=message, reason="INTERNAL")


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and message of ``refusal_for(exc)``."""
    refusal = refusal_for(exc)
    return refusal.code, refusal.message


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
                    await request.abort(context)
                return await unary(request, context)

            return handler._replace(  # type: ignore[no-any-return]
                request_deserializer=lenient, unary_unary=unary_unary
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(
            getattr(handler.unary_stream, "__func__", handler.unary_stream)
        ):
            # Only generator-style streams: a coroutine that writes through the context
            # (the health service's Watch) is passed through as it is.
            stream = handler.unary_stream

            async def unary_stream(
                request: object, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                if isinstance(request, _Undecodable):
                    await request.abort(context)
                async for item in stream(request, context):
                    yield item

            return handler._replace(  # type: ignore[no-any-return]
                request_deserializer=lenient, unary_stream=unary_stream
            )
        return handler  # type: ignore[no-any-return]  # client streams: peers only


class _Undecodable:
    def __init__(self, error: str) -> None:
        self.message = f"malformed request: {error}"

    async def abort(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        code = grpc.StatusCode.INVALID_ARGUMENT
        refusal = Refusal(code=code, message=self.message, reason="MALFORMED")
        await context.abort(code, self.message, refusal.trailers())
