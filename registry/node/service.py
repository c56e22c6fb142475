"""The client API (``registry.v1.Registry``) served by every node.

- Writes go through the leader: a follower forwards them once; with no leader known it
  answers UNAVAILABLE with the reason it can see: "no quorum: 1 of 3 voters reachable"
  only when fewer than a quorum answered lately, else "no leader yet: election in
  progress". A forward that could not connect is sent once more when a new leader is
  known or the channel is back within a second; else it is UNAVAILABLE "leader … is
  unreachable", safe to retry (the leader never received it).
- Lookups come from the local replica; a node without a lease marks them ``stale``.
  ``consistent=True`` does a ReadIndex round first.
- Calls go to the holder: run here, or forwarded one hop (marked by ``registry-forwarded``
  request metadata); a forwarded call that finds the name elsewhere again answers
  UNAVAILABLE, reason ``NOT_OWNER``, naming the owner. A call run here answers with
  ``call_address``, the port of the worker host that runs the name (``hosts/calls.py``),
  where the SDK sends the next one; locations of names held here carry it too.
- Bad input is refused before anything is proposed, with the precise status.
- Every refusal carries a machine-readable reason (``registry.node.status``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio

from registry.core.commands import (
    Command,
    Join,
    Leave,
    NameSpec,
    Register,
    Unregister,
    encode,
)
from registry.core.errors import LimitExceeded, RegistryError
from registry.core.messages import Role
from registry.core.state import MAX_REGISTER_BATCH, NameRecord, validate_identifier
from registry.core.view import ReplicaView
from registry.node.auth.gate import CALLER, PERMISSION, ForwardCaller
from registry.node.client_tls import ClientTls
from registry.node.config import NodeConfig
from registry.node.directory import Directory
from registry.node.restart_policy import restart_from_pb
from registry.node.seams import ClusterHealth, DiskStatus, Replicated, WorkerCalls
from registry.node.status import (
    ENTRY_TOO_LARGE,
    FANOUT_TOO_LARGE,
    PAYLOAD_TOO_LARGE,
    Abort,
    Refusal,
    hop_failed,
    refusal_for,
    relayed,
)
from registry.node.transport import CHANNEL_OPTIONS
from registry.node.unsent import RECONNECT_WAIT_S, never_sent, send_again_if_unsent
from registry.node.watch import WatchHub
from registry.tracing import ClientTracing
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc
from registry.worker.errors import NotHere

log = logging.getLogger("registry.service")
T = TypeVar("T")
WRITE_TIMEOUT_S = 10.0
DEFAULT_CALL_TIMEOUT_S = 30.0
FANOUT_MIN_BYTES = 1024
"""What one fan-out message costs at least against ``max_fanout_bytes`` (a tiny payload
to a huge group still costs a call each)."""
LIST_YIELD_EVERY = 1000
"""``List`` lets the event loop run after this many names: building 100k locations in
one go held a leader's loop ~0.5 s, and in the 100k bench that cost an election."""
FORWARD_CATCH_UP_S = 1.0
"""How long a forwarded call waits for this replica to learn a name the sender knows."""
FORWARDED_KEY = "registry-forwarded"
"""Request metadata on a call or cast one node forwards to another: do not forward again.
(Older nodes set the deprecated ``forwarded`` request field instead; both are read.)"""
FORWARDED = ((FORWARDED_KEY, "1"),)


def _rpc(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Turn errors into statuses; unexpected ones are logged and become INTERNAL."""

    @functools.wraps(method)
    async def wrapper(self: RegistryService, request: Any, context: Any) -> T:
        try:
            return await method(self, request, context)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            refusal = _refusal(exc, method.__name__)
            trailers = refusal.trailers(self._cfg.id)
            await context.abort(refusal.code, refusal.message, trailers)
            raise AssertionError("unreachable") from exc

    return wrapper


def _refusal(exc: Exception, what: str) -> Refusal:
    """The one mapping from an error to a status; unexpected errors are logged."""
    refusal = refusal_for(exc)
    if not isinstance(exc, Abort) and refusal.code is grpc.StatusCode.INTERNAL:
        log.exception("%s failed", what)
    return refusal


def _check(what: str, value: str) -> None:
    problem = validate_identifier(what, value)
    if problem:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


def spec_from_pb(spec: pb.NameSpec) -> NameSpec:
    _check("name", spec.name)
    _check("kind", spec.kind)
    roles: tuple[str, ...] = ()
    if spec.roles:
        roles = tuple(spec.roles)
        for role in roles:
            _check("role", role)
    priority = None
    if spec.priority:
        priority = tuple(tuple(tier.nodes) for tier in spec.priority)
        if not all(priority):
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "priority tiers must not be empty")
    return NameSpec(
        name=spec.name,
        kind=spec.kind,
        args=spec.args,
        roles=roles,
        priority=priority,
        restart=restart_from_pb(spec),
    )


def _entry_bounds(command: Command, binary: bool) -> tuple[int, int]:
    """Bounds on ``len(encode(command, binary=binary))`` without encoding: at least the
    args (base64 in JSON); at most the base64 args plus every string character
    JSON-escaped (6 bytes) and 256 bytes of structure per spec (binary is smaller)."""
    if not isinstance(command, Register):
        return 0, 4096  # names and groups are short identifiers
    low, high = 0, 64
    for spec in command.specs:
        chars = len(spec.name) + len(spec.kind) + sum(len(r) + 3 for r in spec.roles)
        chars += sum(len(n) + 3 for tier in spec.priority or () for n in tier)
        low += len(spec.args) if binary else (len(spec.args) + 2) // 3 * 4
        high += (len(spec.args) + 2) // 3 * 4 + 6 * chars + 256
    return low, high


def check_payload(payload: bytes, limit: int) -> None:
    """``PAYLOAD_TOO_LARGE`` past ``max_payload_bytes`` (the node's port and the hosts')."""
    if len(payload) > limit:
        raise LimitExceeded(
            PAYLOAD_TOO_LARGE,
            f"payload of {len(payload)} bytes is over the {limit}-byte limit (max_payload_bytes)",
        )


class RegistryService(registry_pb2_grpc.RegistryServicer):
    def __init__(
        self,
        cfg: NodeConfig,
        replicated: Replicated,
        directory: Directory,
        *,
        health: ClusterHealth,
        workers: WorkerCalls,
        disk: DiskStatus,
        watches: WatchHub,
        client_tls: ClientTls | None,
        tracer_provider: Any | None = None,
    ) -> None:
        self._cfg = cfg
        self._tracer_provider = tracer_provider
        self._replicated = replicated
        self._directory = directory
        self._health = health
        self._workers = workers
        self._disk = disk
        self._watches = watches
        self._client_tls = client_tls
        self._channels: dict[str, grpc.aio.Channel] = {}

    # -- plumbing ----------------------------------------------------------------------

    @property
    def _view(self) -> ReplicaView:
        return self._replicated.view

    def _stub(self, address: str) -> registry_pb2_grpc.RegistryStub:
        return registry_pb2_grpc.RegistryStub(self._channel(address))

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            # The peer options: a node that restarts is reachable again within a second
            # (gRPC's default reconnect backoff grows to 120 s), and replies up to the
            # payload limit fit (the default receive limit is 4 MiB).
            tls = self._client_tls
            carry: list[Any] = [ForwardCaller(self._cfg.auth)]  # the caller goes along
            if self._tracer_provider is not None:  # and the trace context (a child span)
                carry.append(ClientTracing(self._tracer_provider))
            if tls is None:
                channel = grpc.aio.insecure_channel(
                    address, options=CHANNEL_OPTIONS, interceptors=carry
                )
            else:  # verify the target by node id against the cluster CA (client_tls rule 3)
                node = self._node_at(address)
                options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", node)]
                channel = grpc.aio.secure_channel(
                    address, tls.forward_credentials(), options=options, interceptors=carry
                )
            self._channels[address] = channel
        return channel

    def _node_at(self, address: str) -> str:
        """The node id behind a client address (the name its certificate carries)."""
        for peer, peer_address in self._cfg.peers.items():
            if peer_address == address:
                return peer
        for member_id, member in self._view.state.members.items():
            if member.address == address:
                return member_id
        return address.rpartition(":")[0]

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    async def _leader_back(self, leader: str) -> tuple[str, str] | None:
        """After a forward to ``leader`` that never left: wait, a bounded time, until a
        new leader is known or the channel to this one is up again (it restarted, and
        the channel was backing off); that leader and its address, or None."""
        deadline = time.monotonic() + RECONNECT_WAIT_S  # as long as any unsent forward
        while time.monotonic() < deadline:
            now = self._view.leader
            address = self._directory.address_of(now) if now else None
            if address is not None and (now != leader or self._channel_up(address)):
                return now, address
            await asyncio.sleep(self._cfg.timing.tick)
        return None

    def _channel_up(self, address: str) -> bool:
        channel = self._channels.get(address)
        ready = grpc.ChannelConnectivity.READY
        return channel is not None and channel.get_state(try_to_connect=True) is ready

    async def _write(
        self,
        command: Command,
        context: Any,
        forward: Callable[[registry_pb2_grpc.RegistryStub], Awaitable[T]],
        respond: Callable[[int], T],
    ) -> T:
        self._disk.refuse_writes()  # disk below its reserve: RESOURCE_EXHAUSTED
        self._check_entry(command)
        view = self._view
        if view.role is Role.LEADER:
            async with asyncio.timeout(WRITE_TIMEOUT_S):  # no task per write, as wait_for makes
                index, result = await self._replicated.propose(command)
            if not result.ok:
                raise Abort.result(result.code, result.message, result.reason)
            return respond(index)
        leader = view.leader
        address = self._directory.address_of(leader) if leader else None
        if address is None:
            raise Abort(
                grpc.StatusCode.UNAVAILABLE, self._health.no_quorum_message(), reason="NO_QUORUM"
            )
        for last_try in (False, True):
            try:
                response = await forward(self._stub(address))
                break
            except grpc.aio.AioRpcError as exc:
                unsent = never_sent(exc)
                if unsent and not last_try and (back := await self._leader_back(leader)):
                    leader, address = back  # nothing was sent: forwarding again is safe
                    continue
                if unsent:
                    # The leader never got it (it is gone, e.g. killed): a plain refusal
                    # the client may retry, naming why; not gRPC's bare transport error.
                    raise Abort(
                        grpc.StatusCode.UNAVAILABLE,
                        hop_failed(exc.details() or "", True, leader=(leader, address)),
                        reason="UNREACHABLE",
                        leader=(leader, address),
                    ) from None
                raise relayed(exc, leader=(leader, address)) from None
        # Read your writes through this node: answer once the write is applied here too,
        # so a Call or WhereIs that follows on this node finds it (not NOT_FOUND). The
        # write has succeeded either way; a slow replica only delays the answer.
        index = getattr(response, "index", 0)
        with contextlib.suppress(TimeoutError):
            await self._replicated.wait_applied(index, WRITE_TIMEOUT_S)
        return response

    def _location(self, record: NameRecord) -> pb.Location:
        return self._directory.location(record)

    def _registered(self, name: str) -> NameRecord:
        _check("name", name)
        record = self._view.state.registered(name)
        if record is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"{name!r} is not registered")
        return record

    @staticmethod
    def _allow(permission: str, verb: str, name: str) -> None:
        """PERMISSION_DENIED unless the caller (auth on) holds ``permission`` on ``name``."""
        caller = CALLER.get()
        if caller is not None and not caller.allows(permission, name):
            raise Abort(
                grpc.StatusCode.PERMISSION_DENIED,
                caller.denial(permission, verb, name),
                reason=PERMISSION,
            )

    @staticmethod
    def _readable(name: str) -> bool:
        caller = CALLER.get()
        return caller is None or caller.allows("read", name)

    def _check_payload(self, payload: bytes) -> None:
        check_payload(payload, self._cfg.max_payload_bytes)

    def _check_entry(self, command: Command) -> None:
        """Refuse a write whose log entry would pass ``max_entry_bytes`` before it is
        proposed or forwarded: one oversized entry must never reach Raft (it would not
        fit a peer message, and the leader would lose its term)."""
        limit = self._cfg.max_entry_bytes
        # The leader encodes the entry; a follower, which may not know yet that every peer
        # reads binary (followers rarely talk to each other), checks the smaller binary
        # size and leaves the final word to the leader.
        view = self._view
        binary = view.binary_entries or view.role is not Role.LEADER
        low, high = _entry_bounds(command, binary)
        if high <= limit:
            return  # clearly under: spare the event loop an encode of megabytes
        size = low if low > limit else len(encode(command, binary=binary))  # near the limit
        if size > limit:
            raise LimitExceeded(
                ENTRY_TOO_LARGE,
                f"this request makes a log entry of {'at least ' if size == low else ''}"
                f"{size} bytes, over the {limit}-byte limit (max_entry_bytes); split it "
                "into smaller requests",
            )

    def _check_fanout(self, members: int, payload: bytes) -> None:
        limit = self._cfg.max_fanout_bytes
        cost = members * max(len(payload), FANOUT_MIN_BYTES)
        if cost > limit:
            raise LimitExceeded(
                FANOUT_TOO_LARGE,
                f"{members} members × {len(payload)} payload bytes is {cost} bytes to fan "
                f"out, over the {limit}-byte limit (max_fanout_bytes; a payload counts at "
                f"least {FANOUT_MIN_BYTES})",
            )

    # -- writes ------------------------------------------------------------------------

    @_rpc
    async def Register(self, request: pb.RegisterRequest, context: Any) -> pb.RegisterResponse:
        spec = spec_from_pb(request.spec)
        self._allow("write", "register", spec.name)
        self._check_payload(spec.args)
        return await self._write(
            Register(specs=(spec,)),
            context,
            lambda stub: stub.Register(request, timeout=WRITE_TIMEOUT_S),
            lambda index: pb.RegisterResponse(index=index),
        )

    @_rpc
    async def RegisterMany(
        self, request: pb.RegisterManyRequest, context: Any
    ) -> pb.RegisterManyResponse:
        if not request.specs:
            raise Abort(grpc.StatusCode.INVALID_ARGUMENT, "no names to register")
        if len(request.specs) > MAX_REGISTER_BATCH:
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(request.specs)} names in one batch; the limit is {MAX_REGISTER_BATCH}",
            )
        specs = tuple(spec_from_pb(s) for s in request.specs)
        for spec in specs:
            self._allow("write", "register", spec.name)
            self._check_payload(spec.args)
        return await self._write(
            Register(specs=specs),
            context,
            lambda stub: stub.RegisterMany(request, timeout=WRITE_TIMEOUT_S),
            lambda index: pb.RegisterManyResponse(index=index),
        )

    @_rpc
    async def Unregister(
        self, request: pb.UnregisterRequest, context: Any
    ) -> pb.UnregisterResponse:
        _check("name", request.name)
        self._allow("write", "unregister", request.name)
        return await self._write(
            Unregister(name=request.name),
            context,
            lambda stub: stub.Unregister(request, timeout=WRITE_TIMEOUT_S),
            lambda index: pb.UnregisterResponse(index=index),
        )

    @_rpc
    async def Join(self, request: pb.GroupRequest, context: Any) -> pb.GroupResponse:
        _check("group", request.group)
        _check("name", request.name)
        self._allow("write", "join a group", request.name)
        self._allow("write", "join", request.group)
        return await self._write(
            Join(group=request.group, name=request.name),
            context,
            lambda stub: stub.Join(request, timeout=WRITE_TIMEOUT_S),
            lambda index: pb.GroupResponse(index=index),
        )

    @_rpc
    async def Leave(self, request: pb.GroupRequest, context: Any) -> pb.GroupResponse:
        _check("group", request.group)
        _check("name", request.name)
        self._allow("write", "leave a group", request.name)
        self._allow("write", "leave", request.group)
        return await self._write(
            Leave(group=request.group, name=request.name),
            context,
            lambda stub: stub.Leave(request, timeout=WRITE_TIMEOUT_S),
            lambda index: pb.GroupResponse(index=index),
        )

    # -- reads -------------------------------------------------------------------------

    @_rpc
    async def WhereIs(self, request: pb.WhereIsRequest, context: Any) -> pb.WhereIsResponse:
        _check("name", request.name)
        self._allow("read", "look up", request.name)
        if request.consistent:
            try:
                index = await asyncio.wait_for(self._replicated.read_index(), WRITE_TIMEOUT_S)
                await self._replicated.wait_applied(index, WRITE_TIMEOUT_S)
            except TimeoutError:
                message = self._health.no_quorum_message()
                raise Abort(grpc.StatusCode.UNAVAILABLE, message, reason="NO_QUORUM") from None
        elif self._view.state.registered(request.name) is None:
            await self._catch_up()  # NOT_FOUND only if it is not registered cluster-wide
        record = self._registered(request.name)
        if not record.holder:
            return pb.WhereIsResponse(waiting=True)
        return pb.WhereIsResponse(location=self._location(record))

    @_rpc
    async def List(self, request: pb.ListRequest, context: Any) -> pb.ListResponse:
        """The names under ``prefix`` as this replica knows them. Every
        ``LIST_YIELD_EVERY`` names it lets the event loop run (heartbeats, Readies): each
        location is read as of its own turn, which a local read allows anyway."""
        limit = request.limit or 1000
        out: list[pb.Location] = []
        names = self._view.state.names_with_prefix(request.prefix)
        for seen, name in enumerate(names, 1):
            if seen % LIST_YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if not self._readable(name):
                continue
            record = self._view.state.registered(name)
            if record is None:
                continue
            if len(out) == limit:
                return pb.ListResponse(locations=out, truncated=True)
            out.append(self._location(record))
        return pb.ListResponse(locations=out)

    @_rpc
    async def Members(self, request: pb.MembersRequest, context: Any) -> pb.MembersResponse:
        self._allow("read", "list the members of", request.group)
        return pb.MembersResponse(
            names=[n for n in self._members(request.group) if self._readable(n)]
        )

    def _members(self, group: str) -> list[str]:
        _check("group", group)
        names = self._view.state.groups.get(group)
        if names is None:
            raise Abort(grpc.StatusCode.NOT_FOUND, f"no group {group!r}")
        return sorted(names)

    @_rpc
    async def Cluster(self, request: pb.ClusterRequest, context: Any) -> pb.ClusterStatus:
        return self._health.cluster_status()

    # -- calls -------------------------------------------------------------------------

    async def _catch_up(self) -> None:
        """Apply what the cluster committed before now (a ReadIndex round), so that a
        replica that lags behind a write this client just made does not answer NOT_FOUND
        for it. Best effort: without a leader the local view stands."""
        driver = self._replicated
        try:
            index = await asyncio.wait_for(driver.read_index(), FORWARD_CATCH_UP_S)
            await driver.wait_applied(index, FORWARD_CATCH_UP_S)
        except (TimeoutError, RegistryError):
            pass

    async def _started_here(self, name: str, timeout: float) -> bool:
        """Whether the activation this replica placed here has been started within
        ``timeout``. A Ready applies its entries (what ``_route`` reads) before its
        persist and starts their activations after it (``ReadyLoop`` rule 1), and a
        Ready that applied many names reconciles in the next one: a call arriving in
        between found the name held here yet unknown to the hosts, and was refused."""
        workers, me = self._workers, self._cfg.id

        def settled() -> bool:
            record = self._view.state.registered(name)
            return workers.expects(name) or record is None or record.holder != me

        await self._replicated.wait_for(settled, timeout)
        return workers.expects(name)

    async def _route(
        self,
        name: str,
        forwarded: bool,
        here: Callable[[], Awaitable[T]],
        there: Callable[[registry_pb2_grpc.RegistryStub], Awaitable[T]],
        reconnect_s: float = RECONNECT_WAIT_S,
    ) -> T:
        """Serve ``name`` here or forward it to its holder. A forward that could not
        connect waits at most ``reconnect_s`` for the channel (``unsent``)."""
        _check("name", name)
        if forwarded and self._view.state.registered(name) is None:
            # The sender found it registered and running here: this replica lags behind
            # the sender's (say, it just restarted). Catch up briefly rather than answer
            # NOT_FOUND for a registration that was acknowledged.
            await self._replicated.wait_for(
                lambda: self._view.state.registered(name) is not None, FORWARD_CATCH_UP_S
            )
            if self._view.state.registered(name) is None:
                raise Abort(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{name!r} is not registered on {self._cfg.id} yet, which the "
                    "forwarding node saw registered here; retry",
                )
        elif self._view.state.registered(name) is None:
            await self._catch_up()  # NOT_FOUND only if it is not registered cluster-wide
        record = self._registered(name)
        if not record.holder:
            raise Abort(
                grpc.StatusCode.UNAVAILABLE,
                f"{name!r} is waiting for an eligible member to run it",
                reason="WAITING",
            )
        if record.holder == self._cfg.id:
            try:
                return await here()
            except NotHere as exc:
                if exc.why or not await self._started_here(name, reconnect_s):
                    raise
            return await here()
        address = self._directory.address_of(record.holder)
        owner = (record.holder, address) if address else None
        if forwarded or owner is None:
            message = f"{name!r} runs on {record.holder}, not here"
            raise Abort(grpc.StatusCode.UNAVAILABLE, message, reason="NOT_OWNER", owner=owner)
        channel = self._channel(address or "")
        stub = registry_pb2_grpc.RegistryStub(channel)
        try:  # the holder may have just restarted, its channel backing off: see unsent
            return await send_again_if_unsent(channel, lambda: there(stub), reconnect_s)
        except grpc.aio.AioRpcError as exc:
            raise relayed(exc, owner=owner) from None

    @_rpc
    async def Call(self, request: pb.CallRequest, context: Any) -> pb.CallResponse:
        timeout = context.time_remaining() or DEFAULT_CALL_TIMEOUT_S
        return await self._call(request, timeout, forwarded=_forwarded(request, context))

    async def _call(
        self, request: pb.CallRequest, timeout: float, *, forwarded: bool = False
    ) -> pb.CallResponse:
        self._allow("call", "call", request.name)
        self._check_payload(request.payload)
        workers = self._workers

        async def here() -> pb.CallResponse:
            reply = await workers.call(request.name, request.payload, timeout)
            token = workers.token_of(request.name) or 0
            direct = workers.call_address(request.name)
            return pb.CallResponse(
                payload=reply, node=self._cfg.id, token=token, call_address=direct
            )

        async def there(stub: registry_pb2_grpc.RegistryStub) -> pb.CallResponse:
            forwarded = pb.CallRequest(name=request.name, payload=request.payload)
            response: pb.CallResponse = await stub.Call(
                forwarded, timeout=timeout, metadata=FORWARDED
            )
            return response

        # Half the caller's time at most: a holder that stays down must still be reported
        # UNAVAILABLE (never sent, so retryable), not DEADLINE_EXCEEDED (may have run).
        reconnect_s = min(RECONNECT_WAIT_S, timeout / 2)
        return await self._route(request.name, forwarded, here, there, reconnect_s)

    @_rpc
    async def Cast(self, request: pb.CastRequest, context: Any) -> pb.CastResponse:
        return await self._cast(request, forwarded=_forwarded(request, context))

    async def _cast(self, request: pb.CastRequest, *, forwarded: bool = False) -> pb.CastResponse:
        self._allow("call", "cast to", request.name)
        self._check_payload(request.payload)
        workers = self._workers

        async def here() -> pb.CastResponse:
            await workers.cast(request.name, request.payload)
            return pb.CastResponse()

        async def there(stub: registry_pb2_grpc.RegistryStub) -> pb.CastResponse:
            forwarded = pb.CastRequest(name=request.name, payload=request.payload)
            response: pb.CastResponse = await stub.Cast(
                forwarded, timeout=WRITE_TIMEOUT_S, metadata=FORWARDED
            )
            return response

        return await self._route(request.name, forwarded, here, there)

    @_rpc
    async def Publish(self, request: pb.PublishRequest, context: Any) -> pb.PublishResponse:
        self._allow("call", "publish to", request.group)
        members = self._members(request.group)  # each cast checks call on its member
        self._check_payload(request.payload)
        self._check_fanout(len(members), request.payload)
        results = await asyncio.gather(
            *(self._cast(pb.CastRequest(name=n, payload=request.payload)) for n in members),
            return_exceptions=True,
        )
        delivered = sum(1 for r in results if not isinstance(r, BaseException))
        return pb.PublishResponse(delivered=delivered)

    @_rpc
    async def MultiCall(self, request: pb.MultiCallRequest, context: Any) -> pb.MultiCallResponse:
        self._allow("call", "multi-call", request.group)
        members = self._members(request.group)  # each call checks call on its member
        self._check_payload(request.payload)
        self._check_fanout(len(members), request.payload)
        if not (math.isfinite(request.timeout_s) and request.timeout_s >= 0):
            raise Abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"timeout_s must be a finite number of seconds ≥ 0, 0 for the default "
                f"(got {request.timeout_s})",
            )
        timeout = request.timeout_s or context.time_remaining() or DEFAULT_CALL_TIMEOUT_S

        async def one(name: str) -> pb.CallResult:
            try:
                reply = await self._call(
                    pb.CallRequest(name=name, payload=request.payload), timeout
                )
                return pb.CallResult(name=name, payload=reply.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                refusal = _refusal(exc, "MultiCall")
                return pb.CallResult(
                    name=name,
                    error_code=refusal.code.name,
                    error=refusal.message,
                    error_reason=refusal.reason,
                )

        results = await asyncio.gather(*(one(n) for n in members))
        return pb.MultiCallResponse(results=results)

    # -- watch -------------------------------------------------------------------------

    async def Watch(self, request: pb.WatchRequest, context: Any) -> AsyncIterator[pb.WatchEvents]:
        caller = CALLER.get()
        async for batch in self._watches.subscribe(request.prefix):
            if caller is not None:  # only the names this token may read
                kept = [
                    e
                    for e in batch.events
                    if not e.location.name or self._readable(e.location.name)
                ]
                if not kept:
                    continue
                batch = pb.WatchEvents(events=kept)
            yield batch


def _forwarded(request: pb.CallRequest | pb.CastRequest, context: Any) -> bool:
    """Whether another node forwarded this request (metadata, or an older node's field)."""
    metadata = context.invocation_metadata() or ()
    return request.forwarded or any(key == FORWARDED_KEY for key, _ in metadata)
