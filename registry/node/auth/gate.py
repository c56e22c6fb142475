"""Authentication on the client port: who is calling, before any servicer code runs.

Rules
-----
1. ``auth = "off"``: every caller is anonymous and may do everything (loopback only,
   unless ``insecure_clients``; see ``NodeConfig``).
2. ``auth = "tokens"``: a request carries ``authorization: Bearer <name>.<secret>``. No
   header → UNAUTHENTICATED, reason ``MISSING_TOKEN``; a name or secret the token file
   does not hold → UNAUTHENTICATED, reason ``UNKNOWN_TOKEN``.
3. ``auth = "mtls"``: the client certificate's CN (``client_ca`` verified it) is looked up
   in the token file's ``[tokens]``; not there → UNAUTHENTICATED, ``UNKNOWN_IDENTITY``.
4. ``Cluster`` needs no credentials: it carries members and the leader, no names (like
   ``/readyz``), and clients need it to find the leader.
5. Forwarding keeps the caller: a node that forwards a request to another node's client
   port sends the caller's own ``authorization`` header (tokens), or — in mtls mode —
   ``registry-caller: <identity>``, which a node accepts only on a connection whose
   certificate CN is a configured peer (a node of this cluster, mTLS-verified). The
   receiving node authorizes the request again with the caller's own role.
6. The token file is re-read on SIGHUP (``reload``); a file that does not parse keeps the
   previous tokens, with an error logged. A removed token is refused from then on.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from registry.core.errors import ConfigError
from registry.node.admin_methods import ADMIN_METHODS
from registry.node.auth.policy import Caller, TokenFile
from registry.node.limits import peer_host
from registry.node.status import Refusal
from registry.node.stream_wrap import around_stream

log = logging.getLogger("registry.auth")

CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("caller", default=None)
"""The authenticated caller of the RPC being served (``None``: auth is off)."""
CALLER_KEY = "registry-caller"
OPEN_METHODS = frozenset({"/registry.v1.Registry/Cluster"})
MISSING_TOKEN = "MISSING_TOKEN"
UNKNOWN_TOKEN = "UNKNOWN_TOKEN"
UNKNOWN_IDENTITY = "UNKNOWN_IDENTITY"
PERMISSION = "PERMISSION"
"""The reason of every PERMISSION_DENIED (the message says which permission)."""


class Refused(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Tokens:
    """The token file, reloadable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file = TokenFile.load(path)

    def reload(self) -> bool:
        try:
            self.file = TokenFile.load(self.path)
        except ConfigError as exc:
            log.error("token file not reloaded, the previous tokens stay: %s", exc)
            return False
        log.info("token file %s reloaded: %d tokens", self.path, len(self.file.tokens))
        return True


class AuthGate(grpc.aio.ServerInterceptor):
    """Authenticates each client RPC and sets ``CALLER`` for the servicer (module rules)."""

    def __init__(self, mode: str, tokens: Tokens | None, is_peer: Callable[[str], bool]) -> None:
        self.mode = mode
        self.tokens = tokens
        self.is_peer = is_peer
        """Whether a certificate CN is a node of this cluster (configured or a member)."""

    def authenticate(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        assert self.tokens is not None
        file = self.tokens.file
        metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
        if self.mode == "mtls":
            values = list(context.auth_context().get("x509_common_name") or [])
            cn = bytes(values[0]).decode("utf-8", "replace") if len(values) == 1 else ""
            if CALLER_KEY in metadata and self.is_peer(cn):
                cn = metadata[CALLER_KEY]  # rule 5: a node forwards for its caller
            entry = file.tokens.get(cn)
            if entry is None:
                raise Refused(UNKNOWN_IDENTITY, f"client certificate {cn!r} has no token entry")
            return file.caller(entry)
        header = metadata.get("authorization", "")
        if not header:
            raise Refused(MISSING_TOKEN, "no token: send 'authorization: Bearer <token>'")
        scheme, _, bearer = header.partition(" ")
        entry = file.authenticate(bearer.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            name = bearer.partition(".")[0]
            raise Refused(UNKNOWN_TOKEN, f"unknown token {name!r} (or a wrong secret)")
        return file.caller(entry, header)

    def reader(self, authorization: str) -> Callable[[str], bool] | None:
        """For HTTP: the names the bearer token in ``authorization`` may read."""
        assert self.tokens is not None
        file = self.tokens.file
        scheme, _, bearer = authorization.partition(" ")
        entry = file.authenticate(bearer.strip()) if scheme.lower() == "bearer" else None
        if entry is None:
            return None
        caller = file.caller(entry)
        return lambda name: caller.allows("read", name)

    async def _enter(self, method: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if self.mode == "off" or method in OPEN_METHODS:
            return
        try:
            caller = self.authenticate(context)
        except Refused as exc:
            refusal = Refusal(
                code=grpc.StatusCode.UNAUTHENTICATED, message=exc.message, reason=exc.reason
            )
            await context.abort(refusal.code, refusal.message, refusal.trailers())
        CALLER.set(caller)
        if method in ADMIN_METHODS and not caller.allows("admin", ""):
            # Membership, snapshots: the whole cluster, so admin on every name ("").
            verb = method.rpartition("/")[2]
            refusal = Refusal(
                code=grpc.StatusCode.PERMISSION_DENIED,
                message=f"token {caller.name!r} may not {verb}: needs admin on ''",
                reason=PERMISSION,
            )
            await context.abort(refusal.code, refusal.message, refusal.trailers())

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
        method = handler_call_details.method
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_unary(
                request: object, context: grpc.aio.ServicerContext[Any, Any]
            ) -> Any:
                await self._enter(method, context)
                return await unary(request, context)

            return handler._replace(unary_unary=unary_unary)  # type: ignore[no-any-return]
        if handler.unary_stream is not None:

            async def enter(context: Any) -> object:
                await self._enter(method, context)
                return None

            wrapped = around_stream(handler.unary_stream, enter)
            return handler._replace(unary_stream=wrapped)  # type: ignore[no-any-return]
        return handler  # type: ignore[no-any-return]


def identity(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's name for per-client limits: its token, else its peer address."""
    caller = CALLER.get()
    return f"token:{caller.name}" if caller is not None else peer_host(context)


class ForwardCaller(grpc.aio.UnaryUnaryClientInterceptor):
    """On node-to-node forwarding channels: send the caller along (rule 5)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        caller = CALLER.get()
        if caller is not None:
            extra = (
                (CALLER_KEY, caller.name)
                if self.mode == "mtls"
                else ("authorization", caller.authorization)
            )
            metadata = grpc.aio.Metadata(*(client_call_details.metadata or ()), extra)
            client_call_details = client_call_details._replace(metadata=metadata)
        return await continuation(client_call_details, request)
