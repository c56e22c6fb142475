"""The machinery under ``Client``: channels, the retry loop, redirects, the cache stream.

Theory of operation
-------------------
- **Addresses.** ``Peers`` starts from the seeds and learns every member's address
  (``Cluster`` answers, watch events, redirects). A request any node can serve goes to the
  leader when it is known (it has applied every acknowledged write, so a lookup there
  sees this client's own writes), else to the node that answered last.
- **Placement cache.** One background ``Watch`` stream feeds a ``PlacementCache``; after a
  gap or a reconnect the node sends ``RESET`` and a fresh listing, so the cache
  resynchronises by itself. Calls for a name go straight to the owner it names.
- **Retries.** ``retrying`` sends one request until it gets an answer: it translates a
  failure once (``errors.translate``), follows ``registry-leader`` / ``registry-owner``
  redirects, retries what ``retry.should_retry`` allows with jittered exponential
  backoff, and at the caller's deadline raises the last error, typed, with a message that
  says what was attempted and why it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from random import Random
from typing import Any, TypeVar

import grpc
import grpc.aio

from registry.client.auth import BearerToken
from registry.client.errors import (
    DeadlineExceeded,
    NotFound,
    RegistryError,
    Unavailable,
    _StatusError,
    translate,
)
from registry.client.retry import Backoff, should_retry
from registry.client.routing import Peers, PlacementCache
from registry.client.tls import Tls
from registry.client.types import Placed, WatchEvent, event_from_pb
from registry.tracing import ClientTracing
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc

log = logging.getLogger("registry.client")
T = TypeVar("T")
Send = Callable[[Any, float], Awaitable[T]]
"""``send(stub, seconds_left)``: make one attempt on a ``RegistryStub``."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    # A node that comes back is reachable at once, not after a long reconnect backoff.
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 1000),
    # A watch stream to a node that vanished without a reset (a partition) is noticed.
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 2000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
)
MAX_QUICK_REDIRECTS = 2
"""Redirects followed at once in a row; after that the retry loop backs off."""
REFRESH_INTERVAL_S = 1.0
"""Least time between background ``Cluster`` refreshes (to re-learn the leader), s."""


class Connection:
    """Channels to the nodes, what is known about them, and the retry loop."""

    def __init__(
        self,
        seeds: Sequence[str],
        *,
        use_cache: bool,
        backoff: Backoff,
        rng: Random,
        channel_options: Sequence[tuple[str, int | str]],
        tls: Tls | None = None,
        token: str | None = None,
        tracer_provider: Any | None = None,
    ) -> None:
        self.peers = Peers(list(seeds))
        self.cache = PlacementCache()
        self.use_cache = use_cache
        self.counters = {"calls": 0, "direct": 0, "forwarded": 0, "retries": 0}
        self.counters.update(cache=0, rpc=0)
        self.closed = False
        self._backoff = backoff
        self._rng = rng
        self._options = list(CHANNEL_OPTIONS) + list(channel_options)
        self._tls = tls
        self._credentials = tls.credentials() if tls is not None else None
        interceptors: list[Any] = [BearerToken(token)] if token else []
        if tracer_provider is not None:  # registry/tracing.py: a span per attempt
            interceptors.append(ClientTracing(tracer_provider))
        self._interceptors = interceptors or None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[str, Any] = {}
        self._cache_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._next_refresh = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def close(self) -> None:
        """Stop background tasks and close every channel; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        tasks = [t for t in (self._cache_task, *self._background) if t is not None]
        self._cache_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            await channel.close()

    def start_cache(self) -> None:
        """Start the stream that feeds the placement cache (once; if enabled)."""
        if self.use_cache and self._cache_task is None and not self.closed:
            self._cache_task = asyncio.get_running_loop().create_task(
                self._feed_cache(), name="registry-client-cache"
            )

    async def _feed_cache(self) -> None:
        try:
            async for event in self.watch_events("", self.cache.disconnected):
                self.cache.apply(event)
        except RegistryError as exc:  # e.g. a node too old to serve Watch
            log.warning("placement cache disabled: %s", exc)
        finally:
            self.cache.disconnected()

    def wrote(self, names: Sequence[str], index: int) -> None:
        """This client's write changed ``names`` at log ``index`` (read-your-writes)."""
        if self.use_cache:
            for name in names:
                self.cache.wrote(name, index)

    # -- time and targets ------------------------------------------------------------

    @staticmethod
    def now() -> float:
        """The event loop's clock, seconds."""
        return asyncio.get_running_loop().time()

    def left(self, deadline: float) -> float:
        """Seconds until ``deadline`` (≥ 0)."""
        return max(0.0, deadline - self.now())

    def stub(self, address: str) -> Any:
        """A ``RegistryStub`` on the (cached) channel to ``address``."""
        if self.closed:
            raise RuntimeError("the client is closed")
        stub = self._stubs.get(address)
        if stub is None:
            if self._tls is not None and self._credentials is not None:
                channel = grpc.aio.secure_channel(
                    address,
                    self._credentials,
                    options=self._options + self._tls.options(),
                    interceptors=self._interceptors,
                )
            else:
                channel = grpc.aio.insecure_channel(
                    address, options=self._options, interceptors=self._interceptors
                )
            self._channels[address] = channel
            stub = self._stubs[address] = registry_pb2_grpc.RegistryStub(channel)
        return stub

    def backoff_delay(self, attempt: int) -> float:
        """The jittered delay before retry number ``attempt``, seconds."""
        return self._backoff.delay(attempt, self._rng)

    def any_target(self, failed: str) -> str:
        """For requests any node serves: the leader, else the last good node."""
        return self.peers.pick(avoid=failed)

    # -- requests --------------------------------------------------------------------

    async def cluster(self, deadline: float) -> pb.ClusterStatus:
        """``Cluster`` from some node; learns every member's address and the leader."""
        reply: pb.ClusterStatus = await self.retrying(
            "cluster status",
            lambda stub, t: stub.Cluster(pb.ClusterRequest(), timeout=t),
            self.any_target,
            deadline,
            idempotent=True,
        )
        members = {m.id: m.address for m in reply.members}
        self.peers.learn_members(members, reply.leader_address)
        return reply

    async def routed(
        self, name: str, what: str, send: Send[T], deadline: float, idempotent: bool
    ) -> tuple[T, str]:
        """Send a request about ``name`` to its owner (as far as known); returns the
        reply and the address that answered."""
        direct = self.direct_stub(name)
        if direct is not None:
            answered = await self._try_direct(name, what, send, direct[0], deadline, idempotent)
            if answered:
                return answered[0], direct[0]
        sent_to = [""]

        def target(failed: str) -> str:
            route = self.cache.route(name)
            sent_to[0] = route[1] if route else self.peers.pick(avoid=failed)
            return sent_to[0]

        async def still_registered(error: RegistryError) -> bool:
            # A replica that has not applied a fresh registration yet answers NOT_FOUND;
            # a linearizable lookup tells that apart from a name that does not exist.
            if not isinstance(error, NotFound) or self.left(deadline) <= 0:
                return False
            request = pb.WhereIsRequest(name=name, consistent=True)
            try:
                await self.retrying(
                    f"whereis {name!r}",
                    lambda stub, t: stub.WhereIs(request, timeout=t),
                    self.any_target,
                    min(deadline, self.now() + 2.0),
                    idempotent=True,
                )
            except RegistryError:
                return False  # NotFound: it really is not registered
            return True

        reply = await self.retrying(
            what, send, target, deadline, idempotent=idempotent, name=name, also=still_registered
        )
        return reply, sent_to[0]

    def direct_stub(self, name: str) -> tuple[str, Any] | None:
        """The address and stub of the worker host that runs ``name`` (its
        ``call_address``), when known and its channel is connected; else ``None``."""
        direct = self.cache.direct(name)
        if direct and self._ready(direct):
            return direct, self._stubs[direct]
        return None

    def _ready(self, address: str) -> bool:
        """Whether the channel to ``address`` is connected; if not, it starts connecting
        (a direct address is used only once connected: one that cannot be reached, e.g.
        behind NAT, never delays a call)."""
        self.stub(address)
        state = self._channels[address].get_state(try_to_connect=True)
        return state is grpc.ChannelConnectivity.READY

    async def _try_direct(
        self, name: str, what: str, send: Send[T], address: str, deadline: float, idempotent: bool
    ) -> tuple[T] | None:
        """One attempt at the worker host that runs ``name`` (``call_address``):
        ``(reply,)``, or ``None`` when the node path should be taken (the
        host does not run it any more, is gone, or the address is stale). An answer
        (the worker raised, a refusal of the request itself) is raised as the node's
        would be; so is a failure after which the request may have run, unless
        ``idempotent``."""
        remaining = deadline - self.now()
        if remaining <= 0:
            return None
        try:
            return (await send(self.stub(address), remaining),)
        except (asyncio.CancelledError, grpc.aio.AioRpcError) as exc:
            self.after_direct(exc, name, what, address, idempotent)
        return None

    def after_direct(
        self, exc: BaseException, name: str, what: str, address: str, idempotent: bool
    ) -> None:
        """What a failed attempt at ``name``'s worker host at ``address`` means: returns
        when the node path should be taken, raises the caller's error otherwise."""
        if not isinstance(exc, grpc.aio.AioRpcError):  # cancelled
            if not self._closed_under_us():
                raise exc
            raise Unavailable(
                f"{what}: the client was closed while the request was in flight",
                code="CANCELLED",
                address=address,
                may_have_run=True,
            ) from None
        metadata = tuple(exc.trailing_metadata() or ())
        error = translate(exc.code(), exc.details() or "", metadata, address=address)
        self.cache.drop_direct(name, address)
        if isinstance(error, NotFound) or should_retry(error, idempotent=idempotent):
            log.debug("%s: %s at its host %s; via the node", what, error, address)
            return
        ran = bool(getattr(error, "may_have_run", False))
        raise self._final(error, what, 1, self.now(), ran, idempotent)

    async def retrying(
        self,
        what: str,
        send: Send[T],
        target: Callable[[str], str],
        deadline: float,
        *,
        idempotent: bool,
        name: str = "",
        also: Callable[[RegistryError], Awaitable[bool]] | None = None,
    ) -> T:
        """Send until an answer, an error not worth retrying, or ``deadline``.

        ``target(failed)`` picks the address of each attempt (``failed``: the one that
        just failed, or ``""``); ``name`` is the name routed on (for cache hints);
        ``also(error)`` may declare an otherwise final error retryable."""
        if self.closed:
            raise RuntimeError("the client is closed")
        started = self.now()
        attempts = backoffs = quick = 0
        failed = ""
        ran = False
        error: RegistryError | None = None
        while True:
            address = target(failed)
            remaining = deadline - self.now()
            if remaining <= 0 and error is not None:
                # The backoff sleep overran the deadline (a starved CPU): the last
                # refusal says more than "deadline passed".
                raise self._final(error, what, attempts, started, ran, idempotent)
            if remaining <= 0:
                raise DeadlineExceeded(
                    f"{what}: the deadline passed before it could be sent",
                    code="DEADLINE_EXCEEDED",
                    may_have_run=ran,
                )
            attempts += 1
            try:
                result = await send(self.stub(address), remaining)
            except asyncio.CancelledError:
                if not self._closed_under_us():
                    raise
                raise Unavailable(
                    f"{what}: the client was closed while the request was in flight",
                    code="CANCELLED",
                    address=address,
                    may_have_run=True,
                ) from None
            except grpc.aio.AioRpcError as exc:
                error = translate(
                    exc.code(),
                    exc.details() or "",
                    tuple(exc.trailing_metadata() or ()),
                    address=address,
                )
            else:
                self.peers.ok(address)
                if not self.peers.leader:
                    self._refresh_soon()
                return result
            redirected = self._learn(error, address, name)
            ran = ran or getattr(error, "may_have_run", False)
            retry = should_retry(error, idempotent=idempotent)
            if not retry and also is not None:
                retry = await also(error)
            if not retry:
                raise self._final(error, what, attempts, started, ran, idempotent)
            failed = address
            if redirected and quick < MAX_QUICK_REDIRECTS:
                delay, quick = 0.0, quick + 1
            else:
                delay, quick = self._backoff.delay(backoffs, self._rng), 0
                backoffs += 1
            if self.now() + delay >= deadline:
                raise self._final(error, what, attempts, started, ran, idempotent)
            self.counters["retries"] += 1
            log.debug("%s: %s (at %s); retrying in %.3f s", what, error, address, delay)
            if delay:
                await asyncio.sleep(delay)

    def _learn(self, error: RegistryError, address: str, name: str) -> bool:
        """Update peers and cache from a failure; whether it redirected somewhere new."""
        leader = getattr(error, "leader", None)
        owner = getattr(error, "owner", None)
        unreachable = bool(getattr(error, "unreachable", False))
        redirected = False
        if leader is not None:
            self.peers.learn(leader.node, leader.address)
            if unreachable:
                self.peers.failed(leader.address)  # the follower could not reach it
            elif leader.address != address:
                self.peers.leader = leader.address
                redirected = True
        if owner is not None and name:
            self.peers.learn(owner.node, owner.address)
            if unreachable:
                self.cache.miss(name, owner.address)
                self.peers.failed(owner.address)
            elif owner.address != address:
                self.cache.hint(name, owner.node, owner.address)
                redirected = True
        refused = unreachable or getattr(error, "reason", "") in ("NO_QUORUM", "NO_LEASE")
        if leader is None and owner is None and refused:
            self.peers.failed(address)  # try the others first from now on
        if name and not redirected and isinstance(error, Unavailable | NotFound):
            self.cache.miss(name, address)
        return redirected

    def _final(
        self,
        error: RegistryError,
        what: str,
        attempts: int,
        started: float,
        ran: bool,
        idempotent: bool,
    ) -> RegistryError:
        if not isinstance(error, _StatusError):  # pragma: no cover - translate() makes them
            return error
        node = self.peers.node_at(error.address)
        where = f" (node {node}, {error.address})" if node else f" ({error.address})"
        notes = []
        if isinstance(error, Unavailable) and error.may_have_run and not idempotent:
            notes.append(
                "the request may already have run, so it was not retried "
                "(pass idempotent=True if running it twice is harmless)"
            )
        hint = _tls_hint(str(error), self._tls is not None)
        if hint:
            notes.append(hint)
        if attempts > 1:
            notes.append(f"gave up after {attempts} attempts in {self.now() - started:.1f} s")
        message = f"{what}: {error.message}{where}" + "".join(f"; {n}" for n in notes)
        return error.replace(message, may_have_run=ran)

    def _refresh_soon(self) -> None:
        """Learn the leader again in the background (at most once a second)."""
        now = self.now()
        if self.closed or now < self._next_refresh:
            return
        self._next_refresh = now + REFRESH_INTERVAL_S

        async def refresh() -> None:
            with contextlib.suppress(RegistryError):
                await self.cluster(self.now() + 2.0)

        task = asyncio.get_running_loop().create_task(refresh())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _closed_under_us(self) -> bool:
        """A ``CancelledError`` came from ``close()`` closing the channel, not from the
        caller's task being cancelled."""
        task = asyncio.current_task()
        return self.closed and task is not None and not task.cancelling()

    # -- watch -----------------------------------------------------------------------

    async def watch_events(
        self, prefix: str, on_break: Callable[[], None] | None
    ) -> AsyncIterator[WatchEvent]:
        """Watch events for ``prefix`` forever, reconnecting (to another node if need
        be) with backoff after a failure; ``on_break`` runs when a stream breaks. The node
        sends events in batches; they are yielded one by one, in order."""
        attempt = 0
        failed = ""
        request = pb.WatchRequest(prefix=prefix)
        while not self.closed:
            address = self.peers.pick_any(self._rng, avoid=failed)
            call = self.stub(address).Watch(request)
            try:
                async for batch in call:
                    attempt, failed = 0, ""
                    for raw in batch.events:
                        event = event_from_pb(raw)
                        if event is None:
                            continue
                        if isinstance(event, Placed):
                            self.peers.learn(event.location.node, event.location.address)
                        yield event
            except asyncio.CancelledError:
                if self._closed_under_us():
                    return  # close() ended the stream: the iteration just ends
                raise
            except grpc.aio.AioRpcError as exc:
                error = translate(exc.code(), exc.details() or "", address=address)
                if not isinstance(error, Unavailable | DeadlineExceeded):
                    raise error from None
                if getattr(error, "unreachable", False):
                    self.peers.failed(address)
                log.debug("watch stream from %s broke: %s", address, error)
            finally:
                call.cancel()
            if on_break is not None:
                on_break()
            failed = address
            await asyncio.sleep(self._backoff.delay(attempt, self._rng))
            attempt += 1


def _tls_hint(details: str, tls: bool) -> str:
    """What a failed TLS handshake most likely means, in words (gRPC says "Socket
    closed" or "Ssl handshake failed")."""
    lowered = details.lower()
    if not tls and "socket closed" in lowered:
        return (
            "the node closed the connection: if its client port uses TLS, connect with "
            "tls=Tls(ca=...) (CLI: --ca)"
        )
    if tls and ("ssl" in lowered or "handshake" in lowered or "certificate" in lowered):
        return (
            "TLS handshake failed: check that the CA given signed the node's certificate "
            "and that the certificate names the host dialed"
        )
    return ""
