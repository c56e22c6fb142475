"""Per-node concurrency limits on the client API, answered before any servicer code runs.

Rules
-----
1. At most ``max_concurrent_rpcs`` client RPCs (Watch streams excluded) run at once on a
   node, and at most ``max_watch_streams`` Watch streams are open; one more is refused
   with RESOURCE_EXHAUSTED, reason ``TOO_MANY_RPCS`` / ``TOO_MANY_WATCHES``.
2. At most ``max_rpcs_per_client`` RPCs (Watch included) per client identity: the
   authenticated principal when auth is on (``registry.node.auth``), else the peer's IP.
   One greedy client cannot take the whole node's budget from the others.
3. A refused RPC costs a counter lookup: nothing is parsed, proposed or queued, so
   overload never reaches Raft (no election is ever caused by it).
4. A slot is held until the handler returns or its stream ends (cancellation included).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from registry.node.status import TOO_MANY_RPCS, TOO_MANY_WATCHES, Refusal
from registry.node.stream_wrap import around_stream

WATCH_METHOD = "/registry.v1.Registry/Watch"
IdentityOf = Callable[[grpc.aio.ServicerContext[Any, Any]], str]


def peer_host(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """``ipv4:127.0.0.1:5000`` → ``127.0.0.1`` (the identity of an anonymous client)."""
    peer = context.peer() or "unknown"
    kind, _, rest = peer.partition(":")
    return rest.rpartition(":")[0] or peer if kind in ("ipv4", "ipv6") else peer


class ConcurrencyLimits(grpc.aio.ServerInterceptor):
    """Counts running RPCs and refuses the ones over a limit (module rules)."""

    def __init__(
        self,
        *,
        max_rpcs: int,
        max_watches: int,
        max_per_client: int,
        identity_of: IdentityOf = peer_host,
    ) -> None:
        self.max_rpcs = max_rpcs
        self.max_watches = max_watches
        self.max_per_client = max_per_client
        self.identity_of = identity_of
        self.rpcs = 0
        self.watches = 0
        # A plain dict: a Counter's missing key costs a Python-level __missing__ call,
        # twice per RPC on a worker host's call path.
        self.per_client: dict[str, int] = {}

    def _refusal(self, watch: bool, client: str) -> tuple[str, str] | None:
        if watch and self.watches >= self.max_watches:
            return TOO_MANY_WATCHES, f"{self.watches} Watch streams open (max_watch_streams)"
        if not watch and self.rpcs >= self.max_rpcs:
            return TOO_MANY_RPCS, f"{self.rpcs} RPCs running (max_concurrent_rpcs)"
        running = self.per_client.get(client, 0)
        if running >= self.max_per_client:
            return TOO_MANY_RPCS, (
                f"{running} RPCs of client {client!r} running (max_rpcs_per_client)"
            )
        return None

    async def admit(self, watch: bool, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        client = self.identity_of(context)
        busy = self.try_admit(watch, client)
        if busy is not None:
            await context.abort(busy.code, busy.message, busy.trailers())
        return client

    def try_admit(self, watch: bool, client: str) -> Refusal | None:
        """Take a slot for ``client`` (release it with ``release``), or the refusal: the
        check without a coroutine, for handlers that run it inline (worker hosts)."""
        refusal = self._refusal(watch, client)
        if refusal is not None:
            reason, what = refusal
            return Refusal(
                code=grpc.StatusCode.RESOURCE_EXHAUSTED,
                message=f"node busy: {what}; retry with backoff",
                reason=reason,
            )
        if watch:
            self.watches += 1
        else:
            self.rpcs += 1
        self.per_client[client] = self.per_client.get(client, 0) + 1
        return None

    def release(self, watch: bool, client: str) -> None:
        if watch:
            self.watches -= 1
        else:
            self.rpcs -= 1
        running = self.per_client[client] - 1
        if running <= 0:
            del self.per_client[client]
        else:
            self.per_client[client] = running

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler: Any = await continuation(handler_call_details)
        if handler is None:
            return None
        watch = handler_call_details.method == WATCH_METHOD
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(
                request: object, context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                client = await self.admit(watch, context)
                try:
                    return await unary(request, context)
                finally:
                    self.release(watch, client)

            return handler._replace(unary_unary=unary_unary)  # type: ignore[no-any-return]
        if handler.unary_stream is not None:

            async def admit(context: Any) -> object:
                return await self.admit(watch, context)

            def release(client: object) -> None:
                self.release(watch, str(client))

            wrapped = around_stream(handler.unary_stream, admit, release)
            return handler._replace(unary_stream=wrapped)  # type: ignore[no-any-return]
        return handler  # type: ignore[no-any-return]
