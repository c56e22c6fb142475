"""A worker host's own client port: ``Call`` and ``Cast`` straight from clients.

A call through the node costs a gRPC hop into the control process and a frame each way
on the host's socket; here the client reaches the host that runs the name, and the
control process is not on the path at all (on a busy machine its CPU was the limit).

Rules
-----
1. Only ``registry.v1.Registry/Call`` and ``/Cast`` are served (anything else is
   UNIMPLEMENTED: the node's port serves it), on ``HostInit.call_bind`` with a port the
   OS picks; the host reports the port in its hello, and the node advertises it as
   ``Location.call_address`` / ``CallResponse.call_address`` for the names it runs.
2. The node's client security applies unchanged, in the order the node's interceptors
   apply it: a request that does not parse is INVALID_ARGUMENT ``MALFORMED``; the same
   TLS credentials; the same authentication (``AuthGate.authenticate``: no or a wrong
   token is UNAUTHENTICATED with the node's reasons); the same RPC limits, overall and per
   client (RESOURCE_EXHAUSTED ``TOO_MANY_RPCS``); the same ``call`` permission
   (PERMISSION_DENIED) and payload limit (``PAYLOAD_TOO_LARGE``). The token file is
   re-read when the control process says so (it got SIGHUP).
3. Fencing is the runtime's, on the sub-lease: a message is queued only while it holds
   and dispatched only while it still holds; else UNAVAILABLE ``NO_LEASE``, as on the
   node. A host past its sub-lease plus ``fence_grace`` is dead (watchdog, SIGKILL).
4. A name this host does not run (never here, moved, stopped) is UNAVAILABLE
   ``NOT_OWNER`` without an owner: the client goes through the node, which knows where
   the name runs. A mailbox that is full is ``MAILBOX_FULL``, as on the node.
5. No interceptor wraps the handlers (each costs a coroutine per RPC): the checks run
   inline, in plain functions (``_enter``), and only a refusal awaits anything.
6. With tracing off a call pays nothing for it (no span, no context manager).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import grpc
import grpc.aio
from google.protobuf.message import DecodeError, Message

from registry.node.auth.gate import CALLER, PERMISSION, AuthGate, Refused, Tokens, identity
from registry.node.limits import ConcurrencyLimits, peer_host
from registry.node.service import DEFAULT_CALL_TIMEOUT_S, check_payload
from registry.node.status import Abort, Refusal, refusal_for
from registry.node.transport import SERVER_OPTIONS
from registry.tracing import ServerTracing, node_tracer_provider, worker_span
from registry.v1 import host_pb2
from registry.v1 import registry_pb2 as pb
from registry.worker.errors import CallTimeout, NotHere
from registry.worker.runtime import WorkerRuntime

log = logging.getLogger("registry.host")

SERVICE = "registry.v1.Registry"
NOT_OWNER = "NOT_OWNER"


class HostCalls:
    """The Call/Cast service of one host (module rules)."""

    def __init__(self, runtime: WorkerRuntime, init: host_pb2.HostInit) -> None:
        self.runtime = runtime
        self.node = init.node
        self.host = init.host
        self.max_payload = init.max_payload_bytes
        self.tokens = Tokens(Path(init.token_file)) if init.auth not in ("", "off") else None
        # No node forwards to a host, so no certificate is a peer's (gate rule 5).
        self.gate = AuthGate(init.auth or "off", self.tokens, is_peer=lambda cn: False)
        self.limits = ConcurrencyLimits(
            max_rpcs=init.max_rpcs,
            max_watches=0,
            max_per_client=init.max_rpcs_per_client,
            identity_of=identity,
        )
        # Tracing (registry/tracing.py): a SERVER span per call served here, a child of
        # the client's span, and a worker span around the activation's answer.
        provider = node_tracer_provider(
            init.tracing, "quorum-registry", f"{init.node}/host{init.host}"
        )
        self.tracer_provider = provider
        self.tracing = ServerTracing(f"{init.node}/host{init.host}", provider) if provider else None

    def handler(self) -> grpc.GenericRpcHandler:
        call = self.tracing.wrap(f"{SERVICE}/Call", self.call) if self.tracing else self.call
        cast = self.tracing.wrap(f"{SERVICE}/Cast", self.cast) if self.tracing else self.cast
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Call": grpc.unary_unary_rpc_method_handler(
                    call,
                    request_deserializer=_lenient(pb.CallRequest),
                    response_serializer=pb.CallResponse.SerializeToString,
                ),
                "Cast": grpc.unary_unary_rpc_method_handler(
                    cast,
                    request_deserializer=_lenient(pb.CastRequest),
                    response_serializer=pb.CastResponse.SerializeToString,
                ),
            },
        )

    # -- the handlers ------------------------------------------------------------------

    async def call(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        client = self._enter(request, "call", context)
        if isinstance(client, Refusal):
            await self._refuse(client, context)
        try:
            name = request.name
            reply = self.runtime.submit_call(name, request.payload)
            if self.tracing is None:  # rule 6: no span machinery per call when off
                # Answered at once (activation rule 8): nothing to wait for.
                payload = (
                    reply.result() if reply.done() else await self._answer(name, reply, context)
                )
            else:
                with worker_span(self.tracing, "handle_call", name=name):
                    payload = await self._answer(name, reply, context)
            token = self.runtime.token_of(name) or 0
            return pb.CallResponse(payload=payload, node=self.node, token=token)
        except Exception as exc:
            await self._abort(exc, context)
            raise AssertionError("unreachable") from exc
        finally:
            self.limits.release(False, client)

    def _answer(
        self, name: str, reply: asyncio.Future[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> Awaitable[bytes]:
        if context.time_remaining() is not None:
            # gRPC cancels this task at the caller's deadline (or when it goes away), which
            # cancels ``reply``: a call still queued is dropped (activation rule 7). No
            # timer of our own per call.
            return reply
        return self._bounded(name, reply)

    @staticmethod
    async def _bounded(name: str, reply: asyncio.Future[bytes]) -> bytes:
        """A call without a deadline waits as long as the node would let it."""
        try:
            return await asyncio.wait_for(reply, DEFAULT_CALL_TIMEOUT_S)
        except TimeoutError:
            raise CallTimeout(name, DEFAULT_CALL_TIMEOUT_S) from None

    async def cast(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        client = self._enter(request, "cast to", context)
        if isinstance(client, Refusal):
            await self._refuse(client, context)
        try:
            self.runtime.submit_cast(request.name, request.payload)
            return pb.CastResponse()
        except Exception as exc:
            await self._abort(exc, context)
            raise AssertionError("unreachable") from exc
        finally:
            self.limits.release(False, client)

    # -- checks (rule 2) ---------------------------------------------------------------

    def _enter(
        self, request: Any, verb: str, context: grpc.aio.ServicerContext[Any, Any]
    ) -> str | Refusal:
        """What the node would refuse before its servicer runs, as a refusal; else the
        client's identity for the limits, with its slot taken (the caller releases it).
        Inline, not a coroutine (rule 5)."""
        if isinstance(request, _Undecodable):
            return Refusal(
                code=grpc.StatusCode.INVALID_ARGUMENT, message=request.message, reason="MALFORMED"
            )
        caller = None
        if self.tokens is not None:
            try:
                caller = self.gate.authenticate(context)
            except Refused as exc:
                code = grpc.StatusCode.UNAUTHENTICATED
                return Refusal(code=code, message=exc.message, reason=exc.reason)
            CALLER.set(caller)
        client = identity(context) if caller is not None else peer_host(context)
        busy = self.limits.try_admit(False, client)
        if busy is not None:
            return busy
        try:
            if caller is not None and not caller.allows("call", request.name):
                raise Abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    caller.denial("call", verb, request.name),
                    reason=PERMISSION,
                )
            check_payload(request.payload, self.max_payload)
        except Exception as exc:
            self.limits.release(False, client)
            return refusal_for(exc)
        return client

    async def _abort(self, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        if isinstance(exc, NotHere) and not exc.why.startswith("stopping"):
            name = exc.name
            message = f"{name!r} does not run on worker host {self.host} of {self.node}"
            refusal = Refusal(code=grpc.StatusCode.UNAVAILABLE, message=message, reason=NOT_OWNER)
        else:
            refusal = refusal_for(exc)
            if refusal.code is grpc.StatusCode.INTERNAL:
                log.error("host call failed", exc_info=exc)
        await self._refuse(refusal, context)

    async def _refuse(
        self, refusal: Refusal, context: grpc.aio.ServicerContext[Any, Any]
    ) -> NoReturn:
        await context.abort(refusal.code, refusal.message, refusal.trailers(self.node))
        raise AssertionError("unreachable: abort raises")


class _Undecodable:
    def __init__(self, error: str) -> None:
        self.message = f"malformed request: {error}"


def _lenient(message_type: type[Message]) -> Callable[[bytes], object]:
    """A request that does not parse becomes a marker the handler refuses (rule 2)."""

    def parse(data: bytes) -> object:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return parse


async def serve(calls: HostCalls, init: host_pb2.HostInit) -> tuple[grpc.aio.Server, int]:
    """Start the server on ``init.call_bind`` with a port the OS picks, with the node's
    client TLS if it has one; the server and its port."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers((calls.handler(),))
    bind = f"{init.call_bind}:0"
    if init.tls_cert:
        credentials = grpc.ssl_server_credentials(
            [(init.tls_key, init.tls_cert)],
            root_certificates=init.tls_client_ca or None,
            require_client_auth=bool(init.tls_client_ca),
        )
        port = server.add_secure_port(bind, credentials)
    else:
        port = server.add_insecure_port(bind)
    if port == 0:
        raise OSError(f"cannot listen on {bind}")
    await server.start()
    return server, port
