"""``HostSupervisor``: the control process's side of its worker hosts.

It gives the node the surface a ``WorkerRuntime`` gave it (``apply``, ``call``, ``cast``,
``running``, ``token_of``, ``status``, ``shutdown``) while the activations run in
``workers`` host processes (``registry.node.hosts.main``), one name always on the host
``crc32(name) % workers``.

Fencing rules (the argument is in ``registry.core.membership``, rule 8)
-----------------------------------------------------------------------
1. A host runs activations only under a *sub-lease* ``until`` that is never later than
   the member lease deadline ``L`` (``Driver.lease_deadline``); every change of ``L``, up
   or down, is sent to every host before any effect that depends on it.
2. When the member lease lapses, every activation live on a host at ``L`` must have ended
   (the host reports ``ActivationEnded``) by ``L + fence_grace``, or that host is
   SIGKILLed. The core also emits ``Stop(QUORUM_LOST)`` for each, which the host obeys.
3. Every ``Stop`` must be confirmed within ``fence_grace`` of being sent, every
   ``BeginHandoff`` within ``handoff_deadline + fence_grace``; else SIGKILL. A host's own
   report that a worker overran (``HostFatal``) kills it at once.
4. These timers run on the control loop, which runs no user code: a worker that blocks
   or spins cannot delay them. A host killed, crashed or exited is reaped before
   anything it ran is started again: its activations that the core still wants here
   start again with reason ``RESTART`` and the same tokens; pending handoffs finish
   stateless; pending calls fail with ``NotHere``. Nothing else moves.
5. Every activation that ends is reported (``stopped``) once its end is certain: the host
   said it ended, or the host was reaped; a ``Stop`` of something no host runs, at once.
   The core lets a stopped name run elsewhere (or its member rejoin) only after that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from registry.core.errors import ConfigError, LimitExceeded
from registry.core.replica import Effect, Start, Stop, StopReason
from registry.core.state import Activation, StartReason
from registry.node.config import NodeConfig
from registry.node.hosts.durable import durable_to_host
from registry.node.hosts.process import HostProcess
from registry.v1 import host_pb2 as pb
from registry.worker.errors import CallTimeout, NoLease, NotHere, WorkerFailed
from registry.worker.policy import ActivationState, ActivationStatus

log = logging.getLogger("registry.hosts")

HELLO_TIMEOUT_S = 60.0
"""How long a host may take to import the worker modules and say hello."""
RESTART_BACKOFF_S = (0.05, 5.0)
"""First and largest delay before restarting a host that died; doubles per death
within ``RESTART_WINDOW_S``."""
RESTART_WINDOW_S = 30.0
RESTART_CHUNK = 500
"""Activations a restarted host is sent per loop turn (``_start_again``)."""
LEASE_POLL_S = 0.01
"""How often the supervisor looks at the member lease (sub-lease renewals, lapses)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallPort:
    """Each host's own port for ``Call`` and ``Cast`` (``hosts/calls.py``), secured as
    the node's client port is."""

    bind_host: str
    """Where hosts listen (``listen``'s host); the OS picks each port."""
    advertise_host: str
    """The host clients dial (``advertise``'s host, else ``listen``'s)."""
    tls_cert: bytes = b""
    """The client-port certificate, key and client CA (PEM); empty: plaintext."""
    tls_key: bytes = b""
    tls_client_ca: bytes = b""
    auth: str = "off"
    token_file: str = ""
    max_payload_bytes: int
    max_rpcs: int
    max_rpcs_per_client: int
    tracing: str = ""
    """``NodeConfig.tracing``: spans of the calls served on these ports."""

    def fill(self, init: pb.HostInit) -> None:
        init.call_bind = self.bind_host
        init.tls_cert, init.tls_key, init.tls_client_ca = (
            self.tls_cert,
            self.tls_key,
            self.tls_client_ca,
        )
        init.auth, init.token_file = self.auth, self.token_file
        init.max_payload_bytes = self.max_payload_bytes
        init.max_rpcs, init.max_rpcs_per_client = self.max_rpcs, self.max_rpcs_per_client
        init.tracing = self.tracing


def call_port(cfg: NodeConfig) -> CallPort:
    """The hosts' call ports for a node: on ``listen``'s host, under its client security."""

    def pem(path: str) -> bytes:
        return Path(path).read_bytes() if path else b""

    tls = cfg.client_tls
    return CallPort(
        bind_host=cfg.listen.rpartition(":")[0],
        advertise_host=cfg.address.rpartition(":")[0],
        tls_cert=pem(cfg.client_cert) if tls else b"",
        tls_key=pem(cfg.client_key) if tls else b"",
        tls_client_ca=pem(cfg.client_ca) if tls else b"",
        auth=cfg.auth,
        token_file=str(Path(cfg.token_file).resolve()) if cfg.token_file else "",
        max_payload_bytes=cfg.max_payload_bytes,
        max_rpcs=cfg.max_concurrent_rpcs,
        max_rpcs_per_client=cfg.max_rpcs_per_client,
        tracing=cfg.tracing,
    )


class HostReports(Protocol):
    """What the supervisor reports to the node (a subset of ``RuntimeReports``)."""

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None: ...

    def handoff_ignored(self, name: str, token: int) -> None: ...

    def stopped(self, name: str, token: int) -> None: ...


CAST_ACCEPT_S = 5.0
"""Longest a cast waits for its host to take it into the mailbox (a host blocked by a
synchronous worker reads nothing until the worker returns)."""


def host_index(name: str, hosts: int) -> int:
    """The host a name runs on: stable across restarts and processes."""
    return zlib.crc32(name.encode("utf-8", "surrogatepass")) % hosts


def _call_error(name: str, node: str, reply: pb.CallReply, timeout: float) -> Exception:
    if reply.error == "no_lease":
        return NoLease(node)
    if reply.error == "not_here":
        return NotHere(name, reply.message)
    if reply.error == "timeout":
        return CallTimeout(name, timeout)
    if reply.error.startswith("limit:"):
        return LimitExceeded(reply.error.partition(":")[2], reply.message)
    return WorkerFailed(name, reply.message)


class HostSupervisor:
    """Spawns, feeds, fences and restarts a node's worker hosts (module rules)."""

    def __init__(
        self,
        *,
        node: str,
        workers: int,
        worker_modules: Sequence[str],
        reports: HostReports,
        lease_deadline: Callable[[], float],
        fence_grace: float,
        handoff_deadline: float,
        max_state_bytes: int,
        log_level: str = "INFO",
        mailbox_limit: int = 256,
        mailbox_bytes: int = 64 << 20,
        calls: CallPort | None = None,
    ) -> None:
        if workers < 1:
            raise ConfigError(f"workers must be at least 1 (got {workers})")
        self.node = node
        self._modules = tuple(worker_modules)
        self._reports = reports
        self._lease_deadline = lease_deadline
        self._grace = fence_grace
        self._handoff_deadline = handoff_deadline
        self._max_state = max_state_bytes
        self._log_level = log_level
        self._mailbox_limit = mailbox_limit
        self._mailbox_bytes = mailbox_bytes
        self._calls = calls
        self._hosts = [HostProcess(i, self._on_event) for i in range(workers)]
        self._next_call = 0
        self._closed = False
        self._lapsed_at: float | None = None
        self._held_until = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.kinds: tuple[str, ...] = ()
        self.on_checkpoint: Callable[[HostProcess, pb.CheckpointRequest], None] | None = None
        """Serves a host's ``ctx.checkpoint`` (``registry.node.checkpoints``)."""
        self.on_remind: Callable[[HostProcess, pb.RemindRequest], None] | None = None
        self.on_call_stats: Callable[[pb.CallStats], None] | None = None
        """Calls answered in a host since its last report, by kind (the metrics)."""
        """Serves a host's reminder requests (``registry.node.checkpoints``)."""
        self.on_quit: Callable[[str, int], None] | None = None
        """Unregisters a name whose activation ended itself (fenced by its token)."""

    @property
    def closed(self) -> bool:
        return self._closed

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> tuple[str, ...]:
        """Start every host; return the worker kinds they loaded. Raises ``ConfigError``
        when the worker modules do not load."""
        self._loop = asyncio.get_running_loop()
        hellos = await asyncio.gather(*(self._spawn(h) for h in self._hosts))
        self.kinds = tuple(sorted({k for hello in hellos for k in hello.kinds}))
        self._spawn_task(self._watch_lease())
        return self.kinds

    async def _spawn(self, host: HostProcess) -> pb.HostHello:
        init = pb.HostInit(
            node=self.node,
            host=host.index,
            worker_modules=self._modules,
            fence_grace=self._grace,
            handoff_deadline=self._handoff_deadline,
            max_state_bytes=self._max_state,
            mailbox_limit=self._mailbox_limit,
            mailbox_bytes=self._mailbox_bytes,
        )
        if self._calls is not None:
            self._calls.fill(init)
        proc = await host.launch(init, self._log_level)
        generation = host.generation
        self._spawn_task(self._reap(host, proc, generation))
        assert host.hello is not None
        try:
            hello = await asyncio.wait_for(asyncio.shield(host.hello), HELLO_TIMEOUT_S)
        except TimeoutError:
            host.kill(f"it did not start within {HELLO_TIMEOUT_S:g} s")
            raise ConfigError(f"worker host {host.index} did not start") from None
        if hello.error:
            raise ConfigError(hello.error)
        if host.generation != generation or self._closed:
            raise ConfigError(f"worker host {host.index} died while starting")
        host.connected = True
        if self._calls is not None and hello.call_port:
            host.call_address = f"{self._calls.advertise_host}:{hello.call_port}"
        log.info(
            "worker host %d up: pid %d, kinds %s, calls at %s",
            host.index,
            proc.pid,
            list(hello.kinds),
            host.call_address or "-",
        )
        self._renew(host)
        # Without a lease, nothing restarts: the core is about to stop all of it (a lapse
        # always fences), and another node may already run these names.
        await self._start_again(host, generation)
        return hello

    async def _start_again(self, host: HostProcess, generation: int) -> None:
        """Start what the core still wants on a restarted host, ``RESTART_CHUNK`` at a
        time with a loop turn between: 70k starts sent in one turn stopped the control
        loop for 2.4 s (elections followed). Between chunks the core may stop a name or
        start it anew (``apply`` sends those itself), so each is checked again."""
        pending = list(host.desired.values())
        for first in range(0, len(pending), RESTART_CHUNK):
            if first:
                await asyncio.sleep(0)
            if host.generation != generation or not host.connected:
                return  # died again: its reaper restarts it
            if host.sent_until <= time.monotonic():
                return
            for spec in pending[first : first + RESTART_CHUNK]:
                if host.desired.get(spec.name) is spec:
                    self._send_start(host, spec)

    def _spawn_task(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self) -> None:
        """Stop every activation (``on_stop(SHUTDOWN)``), wait up to ``fence_grace`` for
        the hosts to confirm, kill the rest, reap all. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        waits = []
        for host in self._hosts:
            host.closing = True
            if host.connected and host.stopped is not None:
                host.send(pb.HostCommand(shutdown=pb.HostShutdown()))
                waits.append(host.stopped)
        if waits:
            await asyncio.wait(waits, timeout=self._grace + 0.5)
        for host in self._hosts:
            host.disconnect()
            if host.proc is not None and host.proc.returncode is None:
                host.kill("shutting down")
        procs = [h.proc.wait() for h in self._hosts if h.proc is not None]
        if procs:
            with contextlib.suppress(TimeoutError):  # SIGKILLed: a reap that hangs is moot
                await asyncio.wait_for(asyncio.gather(*procs), 10.0)
        for task in list(self._tasks):
            task.cancel()

    # -- the member lease --------------------------------------------------------------

    async def _watch_lease(self) -> None:
        while not self._closed:
            self.check_lease()
            await asyncio.sleep(LEASE_POLL_S)

    def check_lease(self) -> None:
        """Renew sub-leases, or fence after a lapse (rules 1 and 2)."""
        deadline = self._lease_deadline()
        now = time.monotonic()
        if deadline > now:
            self._lapsed_at = None
            self._held_until = deadline
        elif self._lapsed_at is None and self._held_until > 0:
            self._lapsed_at = lapse = min(self._held_until, deadline or self._held_until)
            assert self._loop is not None
            for host in self._hosts:
                snapshot = set(host.live.items())
                if snapshot:
                    self._loop.call_at(
                        lapse + self._grace, self._check_lapse, host, host.generation, snapshot
                    )
        for host in self._hosts:
            self._renew(host, deadline)

    def _renew(self, host: HostProcess, deadline: float | None = None) -> None:
        until = self._lease_deadline() if deadline is None else deadline
        if until != host.sent_until and host.connected:
            host.sent_until = until
            host.send_lease(until)

    def _check_lapse(
        self, host: HostProcess, generation: int, snapshot: set[tuple[str, int]]
    ) -> None:
        if host.generation != generation:
            return
        stuck = sorted((n, t) for n, t in snapshot if host.live_below(n, t))
        if stuck:
            host.kill(
                f"{len(stuck)} worker(s) still running {self._grace:g} s (fence_grace) after "
                f"the member lease ended, e.g. {stuck[0][0]} (token {stuck[0][1]})",
            )

    # -- effects -----------------------------------------------------------------------

    def host_of(self, name: str) -> HostProcess:
        hosts = self._hosts
        return hosts[host_index(name, len(hosts))] if len(hosts) > 1 else hosts[0]

    def apply(self, effects: Sequence[Effect]) -> None:
        """Send the core's effects to the hosts that run their names (rules 1 and 3)."""
        if self._closed:
            return
        self.check_lease()
        now = time.monotonic()
        assert self._loop is not None
        # One timer per host and deadline for the whole batch, not one per stop: a
        # fence or a rebalance stops thousands of names in one Ready.
        due: dict[tuple[int, float], list[tuple[str, int]]] = {}
        for effect in effects:
            if isinstance(effect, Start):
                spec = effect.activation
                host = self.host_of(spec.name)
                host.desired[spec.name] = spec
                host.failed.pop(spec.name, None)
                self._send_start(host, spec)
                continue
            host = self.host_of(effect.name)
            if isinstance(effect, Stop):
                current = host.desired.get(effect.name)
                if current is not None and current.token <= effect.token:
                    del host.desired[effect.name]
                host.failed.pop(effect.name, None)
                host.handoffs.pop(effect.name, None)
                host.send(
                    pb.HostCommand(
                        stop=pb.HostStop(
                            name=effect.name, token=effect.token, reason=effect.reason.value
                        )
                    )
                )
                if not host.live_below(effect.name, effect.token):
                    # Nothing of it runs (it never started here, or ended already).
                    self._loop.call_soon(self._reports.stopped, effect.name, effect.token)
                    continue
                if effect.reason is StopReason.QUORUM_LOST and self._lapsed_at is not None:
                    continue  # the lapse check (rule 2) already covers it, and earlier
                grace = self._grace
            else:
                if not host.connected:  # restarting: nothing runs it, move it stateless
                    host.desired.pop(effect.name, None)
                    self._loop.call_soon(
                        self._reports.handoff_done, effect.name, effect.token, None
                    )
                    continue
                host.handoffs[effect.name] = effect.token
                host.send(
                    pb.HostCommand(
                        begin_handoff=pb.HostBeginHandoff(name=effect.name, token=effect.token)
                    )
                )
                grace = self._handoff_deadline + self._grace
            if host.live_below(effect.name, effect.token):
                due.setdefault((host.index, grace), []).append((effect.name, effect.token))
        for (index, grace), stops in due.items():
            host = self._hosts[index]
            self._loop.call_at(now + grace, self._check_stopped, host, host.generation, stops)

    def _send_start(self, host: HostProcess, spec: Activation) -> None:
        if not host.connected:
            return  # sent when the host is back (see _spawn)
        host.started(spec.name, spec.token)
        if spec.restart is not None and spec.restart.lazy:
            # A lazy activation starts without an instance: say so from now, not from the
            # host's first report (``Location.active`` read "true" in between).
            host.passive[spec.name] = spec.token
        start = pb.HostStart(
            name=spec.name,
            kind=spec.kind,
            args=spec.args,
            token=spec.token,
            reason=spec.reason.value,
            has_state=spec.state is not None,
            restored_from=spec.restored_from,
        )
        durable_to_host(spec, start)
        if spec.state is not None:
            start.state = spec.state
        host.send(pb.HostCommand(start=start))

    def _check_stopped(
        self, host: HostProcess, generation: int, stops: list[tuple[str, int]]
    ) -> None:
        if host.generation != generation:
            return
        for name, token in stops:
            if host.live_below(name, token):
                host.kill(f"worker {name} (token {token}) did not stop in time")
                return

    # -- events from hosts -------------------------------------------------------------

    def _on_event(self, host: HostProcess, event: pb.HostEvent) -> None:
        kind = event.WhichOneof("kind")
        if kind == "reply":
            self._on_reply(host, event.reply)
        elif kind == "ended":
            ended = event.ended
            host.ended(ended.name, ended.token)
            if ended.failure:
                host.failed[ended.name] = (ended.token, ended.failure)
            self._reports.stopped(ended.name, ended.token)
        elif kind == "handoff":
            report = event.handoff
            if host.handoffs.get(report.name) == report.token:
                del host.handoffs[report.name]
            if report.ignored:
                self._reports.handoff_ignored(report.name, report.token)
                return
            current = host.desired.get(report.name)
            if current is not None and current.token == report.token:
                del host.desired[report.name]
            state = report.state if report.has_state else None
            self._reports.handoff_done(report.name, report.token, state)
        elif kind == "checkpoint" and self.on_checkpoint is not None:
            self.on_checkpoint(host, event.checkpoint)
        elif kind == "activity":
            activity = event.activity
            if activity.active:
                host.passive.pop(activity.name, None)
            else:
                host.passive[activity.name] = activity.token
        elif kind == "call_stats" and self.on_call_stats is not None:
            self.on_call_stats(event.call_stats)
        elif kind == "remind" and self.on_remind is not None:
            self.on_remind(host, event.remind)
        elif kind == "quit" and self.on_quit is not None:
            self.on_quit(event.quit.name, event.quit.token)
        elif kind == "fatal":
            host.kill(event.fatal.reason)
        elif kind == "hello":
            if host.hello is not None and not host.hello.done():
                host.hello.set_result(event.hello)
        elif kind == "stopped" and host.stopped is not None and not host.stopped.done():
            host.stopped.set_result(None)

    def _on_reply(self, host: HostProcess, reply: pb.CallReply) -> None:
        waiting = host.calls.pop(reply.id, None)
        if waiting is None:
            return  # the caller gave up
        future, name, timeout = waiting
        if future.done():
            return
        if reply.error:
            future.set_exception(_call_error(name, self.node, reply, timeout))
        else:
            future.set_result(reply.payload)

    # -- death and restart -------------------------------------------------------------

    async def _reap(
        self, host: HostProcess, proc: asyncio.subprocess.Process, generation: int
    ) -> None:
        code = await proc.wait()
        if host.generation != generation:
            return
        host.disconnect()
        # Nothing of that process runs any more (rule 4): forget its live activations.
        host.generation += 1
        assert self._loop is not None
        for name, token in host.forget_live():
            self._loop.call_soon(self._reports.stopped, name, token)
        host.failed.clear()
        for name, token in sorted(host.handoffs.items()):
            host.desired.pop(name, None)
            self._loop.call_soon(self._reports.handoff_done, name, token, None)
        host.handoffs.clear()
        if self._closed:
            return
        host.desired = {
            name: replace(spec, reason=StartReason.RESTART, state=None)
            for name, spec in host.desired.items()
        }
        now = time.monotonic()
        host.deaths.append(now)
        while host.deaths and host.deaths[0] < now - RESTART_WINDOW_S:
            host.deaths.popleft()
        base, cap = RESTART_BACKOFF_S
        delay = min(cap, base * 2 ** (len(host.deaths) - 1))
        log.error(
            "worker host %d (pid %d) exited with %s; restarting it in %.2f s with %d activations",
            host.index,
            proc.pid,
            code,
            delay,
            len(host.desired),
        )
        await asyncio.sleep(delay)
        host.restarts += 1
        while not self.closed:
            try:
                await self._spawn(host)
            except ConfigError as exc:  # it ran and died: its own reaper restarts it
                log.critical("worker host %d did not come back: %s", host.index, exc)
            except OSError as exc:  # could not even spawn it (fds, processes, memory)
                log.critical(
                    "cannot start worker host %d: %s; retrying in %g s", host.index, exc, cap
                )
                await asyncio.sleep(cap)
                continue
            return

    # -- requests ----------------------------------------------------------------------

    def _serving(self, name: str) -> HostProcess:
        if self._closed:
            raise NotHere(name, "the node is shutting down")
        if self._lease_deadline() <= time.monotonic():
            raise NoLease(self.node)
        host = self.host_of(name)
        failed = host.failed.get(name)
        if failed is not None:
            raise WorkerFailed(name, failed[1])
        if name not in host.live and name not in host.desired:
            raise NotHere(name)
        # Started but not confirmed yet: the host has the Start before this (one ordered
        # socket), so its runtime queues the message for the new activation — a call
        # right after Register is not refused for a start still in flight.
        if not host.connected:
            raise NotHere(name, "its worker host is restarting")
        return host

    async def call(self, name: str, payload: bytes, timeout: float) -> bytes:
        """As ``WorkerRuntime.call``: ``NotHere``, ``NoLease``, ``WorkerFailed``,
        ``LimitExceeded`` (mailbox full) or ``CallTimeout`` (the worker — or its whole
        host — did not answer in time)."""
        deadline = time.monotonic() + timeout
        command = pb.HostCommand()
        call = command.call  # filled in place: a nested message passed in would be copied
        call.name, call.payload, call.deadline = name, payload, deadline
        return await self._ask(name, command, call, timeout, deadline)

    async def cast(self, name: str, payload: bytes) -> None:
        """As ``WorkerRuntime.cast``: returns once the cast is in the activation's mailbox
        (the host acknowledges it), or raises why it was refused — never dropped unseen.
        A host too busy to take it within ``CAST_ACCEPT_S`` answers ``CallTimeout``."""
        command = pb.HostCommand()
        cast = command.cast
        cast.name, cast.payload = name, payload
        await self._ask(name, command, cast, CAST_ACCEPT_S, time.monotonic() + CAST_ACCEPT_S)

    async def _ask(
        self,
        name: str,
        command: pb.HostCommand,
        request: pb.HostCall | pb.HostCast,
        timeout: float,
        deadline: float,
    ) -> bytes:
        """Send ``command`` (whose ``request`` gets a fresh id) and wait for its reply."""
        host = self._serving(name)
        assert self._loop is not None
        self._next_call += 1
        call_id = self._next_call
        future: asyncio.Future[bytes] = self._loop.create_future()
        host.calls[call_id] = (future, name, timeout)
        request.id = call_id
        host.send(command)
        try:
            async with asyncio.timeout_at(deadline):
                return await future
        except TimeoutError:
            raise CallTimeout(name, timeout) from None
        finally:
            host.calls.pop(call_id, None)

    def reload_tokens(self) -> None:
        """Have every host re-read the token file (the node did, on SIGHUP)."""
        for host in self._hosts:
            host.send(pb.HostCommand(reload_tokens=pb.HostReloadTokens()))

    # -- queries -----------------------------------------------------------------------

    def passive_count(self) -> int:
        """Activations here with no instance now (``registry_passive_activations``)."""
        return sum(len(host.passive) for host in self._hosts)

    def active(self, name: str) -> bool | None:
        """Whether ``name``'s activation here has an instance (``None``: none runs
        here): false for a lazy name before its first message, or a passivated one."""
        host = self.host_of(name)
        token = host.live.get(name)
        if token is None:
            return None
        return host.passive.get(name) != token

    def call_address(self, name: str) -> str:
        """The port of the host that runs ``name`` here, for clients to call it directly
        (``hosts/calls.py``); ``""`` when it has none or is not up."""
        host = self.host_of(name)
        return host.call_address if host.connected else ""

    def running(self) -> dict[str, int]:
        return dict(sorted(item for host in self._hosts for item in host.live.items()))

    def token_of(self, name: str) -> int | None:
        return self.host_of(name).live.get(name)

    def expects(self, name: str) -> bool:
        host = self.host_of(name)
        return name in host.desired or name in host.live

    def status(self) -> dict[str, ActivationStatus]:
        """Name → status as the control process knows it (failed ones included)."""
        out: dict[str, ActivationStatus] = {}
        for host in self._hosts:
            for name, spec in host.desired.items():
                out[name] = ActivationStatus(
                    token=spec.token,
                    kind=spec.kind,
                    state=ActivationState.RUNNING
                    if name in host.live
                    else ActivationState.STARTING,
                    restarts=0,
                    last_error="",
                )
            for name, (token, failure) in host.failed.items():
                kind = host.desired[name].kind if name in host.desired else ""
                out[name] = ActivationStatus(
                    token=token,
                    kind=kind,
                    state=ActivationState.FAILED,
                    restarts=0,
                    last_error=failure,
                )
        return dict(sorted(out.items()))

    def hosts(self) -> list[dict[str, int]]:
        """Per host: id, pid, activations running, restarts (for ``/status``, metrics)."""
        return [
            {"id": h.index, "pid": h.pid, "activations": len(h.live), "restarts": h.restarts}
            for h in self._hosts
        ]
