"""``Client``: the asyncio SDK (``grpc.aio``).

Theory of operation
-------------------
This module is the API surface; the machinery (channels, the address book, the
placement cache stream, the retry loop) is ``registry.client.connection``.

- **Addresses.** The client starts from one or more seeds and learns every member's
  address (``cluster()``, watch events, redirects).
- **Placement cache.** A background ``Watch`` stream keeps name → location current and
  resynchronises after a gap or a reconnect. ``whereis`` answers from it once it is
  synced; ``call`` and ``cast`` use it to go straight to the owner (no forwarding hop),
  and to the worker host that runs the name once its ``call_address`` is known (no hop
  through the node at all); a host that refuses or is gone sends them back the node way.
- **Retries.** Failures are translated once (``errors.translate``); redirects are
  followed; what ``retry.should_retry`` allows is retried with jittered exponential
  backoff until the caller's deadline; then the last error is raised, typed.
- **At most once.** A ``call`` or ``cast`` that may already have run (the connection broke
  after the request was sent, or a deadline passed) is *not* retried unless the caller
  passes ``idempotent=True``; the raised error then has ``may_have_run=True``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Iterable, Sequence
from dataclasses import dataclass
from random import Random
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from registry.client.coalesce import WriteCoalescer
from registry.client.connection import Connection, Send
from registry.client.errors import NameTaken, NotFound, RegistryError, Unavailable, translate
from registry.client.retry import Backoff
from registry.client.tls import Tls
from registry.client.types import (
    ClusterStatus,
    Location,
    Priority,
    Registration,
    WatchEvent,
    cluster_from_pb,
    location_from_pb,
)
from registry.v1 import registry_pb2 as pb
from registry.wire.errors import REASON_KEY

__all__ = ["DEFAULT_TIMEOUT_S", "Client", "ClientStats"]

DEFAULT_TIMEOUT_S = 10.0
"""Deadline of every operation when the caller gives none, seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientStats:
    """Counters since the client was made (a snapshot; see ``Client.stats``)."""

    calls: int
    """``call`` requests answered."""
    calls_direct: int
    """…of which the node we sent to ran it itself (no forwarding hop)."""
    calls_forwarded: int
    """…of which the node we sent to forwarded it to the owner (one extra hop)."""
    retries: int
    """Attempts repeated after a retryable failure, all operations."""
    cache_lookups: int
    """``whereis`` answered from the placement cache."""
    rpc_lookups: int
    """``whereis`` answered by a node."""
    register_batches: int
    """Batches of concurrent ``register`` calls sent as one ``RegisterMany``."""
    registrations_batched: int
    """…the registrations they carried."""
    registrations_resent: int
    """…of which sent again on their own after their batch was refused (a name taken)."""


class Client:
    """The asyncio client of a quorum-registry cluster.

    ::

        async with Client("127.0.0.1:7400") as client:
            await client.register("visits", "counter")
            print(await client.call("visits", b"incr"))

    ``seeds``: one ``host:port`` or several; the rest of the cluster is learned from them.
    ``timeout``: default deadline of each operation, seconds (10). ``cache``: keep a
    placement cache fed by a watch stream (default ``True``). ``backoff`` and ``rng``:
    the retry delays (inject a seeded ``random.Random`` for reproducible runs).
    ``coalesce_writes``: send the ``register`` calls made in one event-loop round as one
    ``RegisterMany`` (default ``True``; each caller still gets its own answer, see
    ``registry.client.coalesce``). ``channel_options``: extra gRPC channel options.
    ``tracer_provider``: an OpenTelemetry ``TracerProvider`` (extra
    ``quorum-registry[otel]``): each request becomes a CLIENT span whose context travels
    to the nodes (``registry/tracing.py``).

    Every method raises a ``registry.RegistryError`` subclass for a failure the cluster
    reports (see ``registry.client.errors``); ``Unavailable`` only after retrying until
    the deadline. Use it from one event loop; ``close()`` (or ``async with``) releases
    its channels and is safe to call twice.
    """

    def __init__(
        self,
        seeds: str | Sequence[str],
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        cache: bool = True,
        backoff: Backoff | None = None,
        rng: Random | None = None,
        channel_options: Sequence[tuple[str, int | str]] = (),
        tls: Tls | None = None,
        token: str | None = None,
        tracer_provider: Any | None = None,
        coalesce_writes: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 s (got {timeout})")
        self._timeout = timeout
        self._conn = Connection(
            [seeds] if isinstance(seeds, str) else list(seeds),
            use_cache=cache,
            backoff=backoff or Backoff(),
            rng=rng or Random(),
            channel_options=channel_options,
            tls=tls,
            token=token,
            tracer_provider=tracer_provider,
        )
        self._coalescer = (
            WriteCoalescer(self._register_one, self._register_batch) if coalesce_writes else None
        )

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self, timeout: float | None = None) -> ClusterStatus:
        """Reach a node, learn the members' addresses and the leader, and start the
        placement cache. Optional: every method connects on first use."""
        status = await self.cluster(timeout=timeout)
        self._conn.start_cache()
        return status

    async def close(self) -> None:
        """Stop the cache stream and close every channel; safe to call twice."""
        if self._coalescer is not None:
            await self._coalescer.close()
        await self._conn.close()

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
        return self._conn.closed

    @property
    def stats(self) -> ClientStats:
        """Counters: calls sent straight to the owner vs forwarded, retries, lookups."""
        n = self._conn.counters
        return ClientStats(
            calls=n["calls"],
            calls_direct=n["direct"],
            calls_forwarded=n["forwarded"],
            retries=n["retries"],
            cache_lookups=n["cache"],
            rpc_lookups=n["rpc"],
            register_batches=self._coalescer.batches if self._coalescer else 0,
            registrations_batched=self._coalescer.batched if self._coalescer else 0,
            registrations_resent=self._coalescer.resent if self._coalescer else 0,
        )

    @property
    def cache_synced(self) -> bool:
        """Whether the placement cache holds a complete, live listing."""
        return self._conn.cache.synced

    def cached(self, name: str) -> Location | None:
        """Where the placement cache says ``name`` runs, without asking any node
        (``None``: not known, waiting, or the cache is not synced)."""
        return self._conn.cache.lookup(name)[1]

    # -- registry writes -------------------------------------------------------------

    async def register(
        self,
        name: str,
        kind: str,
        args: bytes = b"",
        roles: Sequence[str] = (),
        priority: Priority | None = None,
        *,
        timeout: float | None = None,
        restart: str | None = None,
        max_restarts: int | None = None,
        restart_window: float | None = None,
        lazy: bool = False,
        idle_after: float = 0.0,
    ) -> int:
        """Register ``name`` to run a worker of ``kind`` somewhere in the cluster;
        returns the log index that committed it.

        ``args`` reach the worker as ``ctx.args``; ``roles`` restrict it to members
        offering them; ``priority`` (``["n1", ["n2", "n3"]]``) replaces the hash ring.
        ``restart``, ``max_restarts``, ``restart_window``, ``lazy``, ``idle_after``: its
        restart and activation policy (see ``Registration``). Raises ``NameTaken``,
        ``InvalidArgument``, ``FailedPrecondition`` (no member could ever run it),
        ``PayloadTooLarge`` (``args``), ``NoQuorum``/``Unavailable``.
        Not retried once it may have been committed (``may_have_run`` on the error).
        """
        spec = Registration(
            name,
            kind,
            args=args,
            roles=roles,
            priority=priority,
            restart=restart,
            max_restarts=max_restarts,
            restart_window=restart_window,
            lazy=lazy,
            idle_after=idle_after,
        ).to_pb()
        deadline = self._deadline(timeout)
        if self._coalescer is None:
            return await self._register_one(spec, deadline)
        self._conn.start_cache()
        return await self._coalescer.register(spec, deadline)

    async def register_many(
        self, registrations: Iterable[Registration], *, timeout: float | None = None
    ) -> int:
        """Register several names in one log entry (all or none); returns its index.

        ``registrations``: ``Registration(name, kind, args=..., roles=..., priority=...)``
        values (at most 10 000). Errors as ``register``; the message names the name."""
        return await self._register_specs(
            [r.to_pb() for r in registrations], self._deadline(timeout)
        )

    async def _register_one(self, spec: pb.NameSpec, deadline: float) -> int:
        request = pb.RegisterRequest(spec=spec)
        reply = await self._write_by(
            f"register {spec.name!r}", lambda stub, t: stub.Register(request, timeout=t), deadline
        )
        index = int(reply.index)
        self._conn.wrote((spec.name,), index)
        return index

    async def _register_batch(self, specs: list[pb.NameSpec], deadline: float) -> int:
        others = len(specs) - 1
        what = f"register {specs[0].name!r} and {others} other name(s) sent with it"
        return await self._register_specs(specs, deadline, what)

    async def _register_specs(
        self, specs: list[pb.NameSpec], deadline: float, what: str = ""
    ) -> int:
        request = pb.RegisterManyRequest(specs=specs)
        reply = await self._write_by(
            what or f"register {len(specs)} names",
            lambda stub, t: stub.RegisterMany(request, timeout=t),
            deadline,
        )
        index = int(reply.index)
        self._conn.wrote([s.name for s in specs], index)
        return index

    async def unregister(self, name: str, *, timeout: float | None = None) -> int:
        """Unregister ``name`` (its worker is stopped); returns the log index.

        Raises ``NotFound`` if it is not registered."""
        request = pb.UnregisterRequest(name=name)
        reply = await self._write(
            f"unregister {name!r}", lambda stub, t: stub.Unregister(request, timeout=t), timeout
        )
        index = int(reply.index)
        self._conn.wrote((name,), index)
        return index

    async def join(self, group: str, name: str, *, timeout: float | None = None) -> int:
        """Add the registered ``name`` to ``group``; returns the log index.

        Raises ``NotFound`` (no such name) or ``NameTaken`` (already a member)."""
        request = pb.GroupRequest(group=group, name=name)
        reply = await self._write(
            f"join {name!r} to {group!r}", lambda stub, t: stub.Join(request, timeout=t), timeout
        )
        return int(reply.index)

    async def leave(self, group: str, name: str, *, timeout: float | None = None) -> int:
        """Remove ``name`` from ``group``; returns the log index.

        Raises ``NotFound`` (no such group, or ``name`` is not in it)."""
        request = pb.GroupRequest(group=group, name=name)
        reply = await self._write(
            f"remove {name!r} from {group!r}",
            lambda stub, t: stub.Leave(request, timeout=t),
            timeout,
        )
        return int(reply.index)

    # -- lookups ---------------------------------------------------------------------

    async def whereis(
        self, name: str, consistent: bool = False, *, timeout: float | None = None
    ) -> Location | None:
        """Where ``name`` runs; ``None`` if it is not registered or waits for an
        eligible member.

        By default answered from the placement cache when it is synced (possibly a
        little behind, but never behind this client's own writes), else by a node.
        ``consistent=True`` asks a node for a linearizable read (a ReadIndex round).
        A ``Location`` with ``stale=True`` came from a node without quorum."""
        self._conn.start_cache()
        if not consistent:
            known, location = self._conn.cache.lookup(name)
            if known:
                self._conn.counters["cache"] += 1
                return location
        request = pb.WhereIsRequest(name=name, consistent=consistent)
        try:
            reply = await self._conn.retrying(
                f"whereis {name!r}",
                lambda stub, t: stub.WhereIs(request, timeout=t),
                self._conn.any_target,
                self._deadline(timeout),
                idempotent=True,
            )
        except NotFound:
            return None
        self._conn.counters["rpc"] += 1
        if reply.waiting or not reply.HasField("location"):
            return None
        location = location_from_pb(reply.location)
        self._conn.peers.learn(location.node, location.address)
        return location

    async def whereis_or_register(
        self,
        name: str,
        kind: str,
        args: bytes = b"",
        roles: Sequence[str] = (),
        priority: Priority | None = None,
        *,
        timeout: float | None = None,
    ) -> Location:
        """Where ``name`` runs, registering it first if needed (Swarm's
        ``whereis_or_register_name``); waits until it is placed.

        Losing a race with another registrant is fine (their registration is used).
        Raises ``Unavailable`` if the name is still waiting for a member at the deadline,
        or what ``register`` raises."""
        deadline = self._deadline(timeout)
        attempt = 0
        while True:
            location = await self.whereis(name, timeout=self._conn.left(deadline))
            if location is not None:
                return location
            with contextlib.suppress(NameTaken):
                await self.register(
                    name, kind, args, roles, priority, timeout=self._conn.left(deadline)
                )
            location = await self.whereis(name, timeout=self._conn.left(deadline))
            if location is not None:
                return location
            delay = self._conn.backoff_delay(attempt)
            attempt += 1
            if self._conn.now() + delay >= deadline:
                raise Unavailable(
                    f"{name!r} is registered but no member runs it yet", code="UNAVAILABLE"
                )
            await asyncio.sleep(delay)

    async def members(self, group: str, *, timeout: float | None = None) -> list[str]:
        """The names in ``group``, sorted. Raises ``NotFound`` for an unknown group."""
        request = pb.MembersRequest(group=group)
        reply = await self._conn.retrying(
            f"members of {group!r}",
            lambda stub, t: stub.Members(request, timeout=t),
            self._conn.any_target,
            self._deadline(timeout),
            idempotent=True,
        )
        return list(reply.names)

    async def list_names(
        self, prefix: str = "", *, limit: int = 1000, timeout: float | None = None
    ) -> tuple[list[Location], bool]:
        """Registered names starting with ``prefix``, sorted, at most ``limit``, as one
        node sees them; and whether more were left out. A name waiting for a member has
        an empty ``node``."""
        request = pb.ListRequest(prefix=prefix, limit=limit)
        reply = await self._conn.retrying(
            f"list {prefix!r}",
            lambda stub, t: stub.List(request, timeout=t),
            self._conn.any_target,
            self._deadline(timeout),
            idempotent=True,
        )
        return [location_from_pb(loc) for loc in reply.locations], bool(reply.truncated)

    async def cluster(self, *, timeout: float | None = None) -> ClusterStatus:
        """The cluster as a node sees it (leader, term, quorum, members); also refreshes
        the addresses this client knows."""
        return cluster_from_pb(await self._conn.cluster(self._deadline(timeout)))

    # -- messages --------------------------------------------------------------------

    async def call(
        self,
        name: str,
        payload: bytes,
        timeout: float | None = None,
        *,
        idempotent: bool = False,
    ) -> bytes:
        """Send ``payload`` to ``name``'s worker (``handle_call``) and return its reply.

        Goes straight to the owner when the cache knows it, follows redirects, and
        retries while the name is moving or its node is down (failover, handoff) until
        ``timeout`` seconds have passed.

        **At most once** by default: if the request may already have reached the worker
        (the connection broke after sending, or the deadline passed) it is not sent again
        and the error has ``may_have_run=True``. Pass ``idempotent=True`` when running it
        twice is harmless; it is then retried through those failures too (at least once,
        within the deadline). Raises ``NotFound``, ``WorkerError`` (the worker raised),
        ``PayloadTooLarge``, ``DeadlineExceeded`` or ``Unavailable``."""
        request = pb.CallRequest(name=name, payload=payload)
        conn = self._conn
        conn.start_cache()
        deadline = self._deadline(timeout)
        direct = conn.direct_stub(name)
        remaining = deadline - conn.now()
        if direct is not None and remaining > 0:
            # Straight to the worker host, inline: at one call in flight a call is a few
            # hundred microseconds, and each layer of coroutines costs some of them.
            address, stub = direct
            try:
                reply = await stub.Call(request, timeout=remaining)
            except (asyncio.CancelledError, grpc.aio.AioRpcError) as exc:
                conn.after_direct(exc, name, f"call {name!r}", address, idempotent)
            else:
                conn.counters["calls"] += 1
                conn.counters["direct"] += 1
                return bytes(reply.payload)
        reply, address = await conn.routed(
            name,
            f"call {name!r}",
            lambda stub, t: stub.Call(request, timeout=t),
            deadline,
            idempotent,
        )
        conn.counters["calls"] += 1
        there = conn.peers.node_at(address)
        if reply.node and there and reply.node != there:
            conn.counters["forwarded"] += 1
        else:
            conn.counters["direct"] += 1
        if reply.call_address:  # the node ran it; its host serves the next call directly
            conn.cache.learn_direct(name, reply.call_address)
        elif address == conn.cache.direct(name):
            return bytes(reply.payload)
        owner_address = conn.peers.nodes.get(reply.node)
        if owner_address and owner_address != address:
            conn.cache.hint(name, reply.node, owner_address)
        return bytes(reply.payload)

    async def cast(
        self,
        name: str,
        payload: bytes,
        timeout: float | None = None,
        *,
        idempotent: bool = False,
    ) -> None:
        """Queue ``payload`` for ``name``'s worker (``handle_cast``); returns once the
        owner has queued it, without waiting for the worker. Routing, retries and the
        at-most-once rule are those of ``call``."""
        request = pb.CastRequest(name=name, payload=payload)
        await self._routed(
            name,
            f"cast to {name!r}",
            lambda stub, t: stub.Cast(request, timeout=t),
            timeout,
            idempotent,
        )

    async def publish(self, group: str, payload: bytes, *, timeout: float | None = None) -> int:
        """Cast ``payload`` to every member of ``group``; returns how many queued it.
        At most once per member (retried only if no node took the request)."""
        request = pb.PublishRequest(group=group, payload=payload)
        reply = await self._conn.retrying(
            f"publish to {group!r}",
            lambda stub, t: stub.Publish(request, timeout=t),
            self._conn.any_target,
            self._deadline(timeout),
            idempotent=False,
        )
        return int(reply.delivered)

    async def multi_call(
        self, group: str, payload: bytes, timeout: float | None = None
    ) -> dict[str, bytes | RegistryError]:
        """Call every member of ``group`` with ``payload`` in parallel (fanned out by a
        node); returns name → reply, or the typed error for that member (partial
        failures do not raise). ``timeout`` bounds the whole fan-out. Raises
        ``NotFound`` for an unknown group."""
        deadline = self._deadline(timeout)

        def send(stub: Any, remaining: float) -> Awaitable[Any]:
            # Leave the node a little time to gather the answers before our deadline.
            inner = max(0.001, remaining - min(0.25, remaining / 5))
            request = pb.MultiCallRequest(group=group, payload=payload, timeout_s=inner)
            return stub.MultiCall(request, timeout=remaining)  # type: ignore[no-any-return]

        reply = await self._conn.retrying(
            f"multi_call to {group!r}", send, self._conn.any_target, deadline, idempotent=False
        )
        out: dict[str, bytes | RegistryError] = {}
        for result in reply.results:
            if result.error_code:
                reason = ((REASON_KEY, result.error_reason),) if result.error_reason else ()
                out[result.name] = translate(result.error_code, result.error, reason)
            else:
                out[result.name] = bytes(result.payload)
        return out

    # -- watch -----------------------------------------------------------------------

    async def watch(self, prefix: str = "") -> AsyncGenerator[WatchEvent, None]:
        """Placement changes of names starting with ``prefix``, forever.

        Yields ``Reset``, then ``Placed``/``Waiting`` for every current name, then
        ``Synced``; then one ``Placed``/``Waiting``/``Removed`` per change. After a gap
        (the stream fell behind, or it reconnected to another node after a failure) it
        yields ``Reset`` and a fresh listing again: drop what you derived and rebuild.
        Ends when the client is closed; stop early with ``break``."""
        async for event in self._conn.watch_events(prefix, None):
            yield event

    # -- internals -------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        return self._conn.now() + (self._timeout if timeout is None else timeout)

    async def _write(self, what: str, send: Send[Any], timeout: float | None) -> Any:
        return await self._write_by(what, send, self._deadline(timeout))

    async def _write_by(self, what: str, send: Send[Any], deadline: float) -> Any:
        self._conn.start_cache()
        return await self._conn.retrying(
            what, send, self._conn.any_target, deadline, idempotent=False
        )

    async def _routed(
        self, name: str, what: str, send: Send[Any], timeout: float | None, idempotent: bool
    ) -> tuple[Any, str]:
        self._conn.start_cache()
        return await self._conn.routed(name, what, send, self._deadline(timeout), idempotent)
