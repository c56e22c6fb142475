"""A worker host process: runs activations for its control process, under a sub-lease.

Started by ``HostSupervisor`` as ``python -m registry.node.hosts.main --fd N ...`` with
one end of a socket pair; it is the only kind of process of a node that runs user code.

Rules
-----
1. Dies with its parent: ``PR_SET_PDEATHSIG(SIGKILL)`` is set first thing, then the parent
   is checked to be the one that spawned it (it may have died before the prctl).
2. Runs at a lower CPU priority than the control process (``os.nice``), so a host that
   saturates every core cannot starve heartbeats.
3. Runs ``WorkerRuntime`` unchanged; its ``lease_holds`` is the sub-lease: true while
   ``time.monotonic() < until``, where ``until`` is the last ``SubLease`` received. The
   control process never grants past its own member lease and may move ``until`` back.
4. Two sockets: effects, calls and casts arrive on the *work* socket, read by the event
   loop; sub-leases arrive on the *lease* socket, read by the *lease thread*, so a worker
   that blocks the loop does not stop renewals (a busy host is not a failed one), and
   calls pay no thread handoff.
5. The lease thread is also the watchdog: it ``os._exit``s (code 75) once
   ``until + fence_grace`` has passed while any activation's code may still run — the
   control process may be stalled (``SIGSTOP``, swapped out) and unable to kill this
   host itself. It needs the GIL to run; a C extension that holds the GIL is covered by
   the control process's SIGKILL.
6. Exits when the control process closes the work socket.
7. ``$REGISTRY_NODE_PID`` holds the control process's pid, for worker code that wants
   to name its node's process (the test ledger does).
8. With ``HostInit.call_bind`` the host serves ``Call`` and ``Cast`` on a port of its own
   (``hosts/calls.py``), under the node's client TLS, auth and limits, before it says
   hello (which carries the port).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence

from registry.core.errors import LimitExceeded, RegistryError
from registry.core.replica import BeginHandoff, Effect, Start, Stop, StopReason
from registry.core.state import Activation, StartReason
from registry.node.event_loop import run_loop
from registry.node.gc_pauses import BulkFreezer, tune_gc
from registry.node.hosts.calls import HostCalls, serve
from registry.node.hosts.durable import (
    HostCheckpoints,
    reminders_from_host,
    restart_from_host,
)
from registry.node.hosts.frames import READ_CHUNK, FrameReader, FrameWriter, encode, from_host
from registry.node.logs import FORMATS, configure
from registry.v1 import host_pb2 as pb
from registry.worker.call_stats import REPORT_S, KindCalls
from registry.worker.errors import CallTimeout, NoLease, NotHere, WorkerFailed
from registry.worker.runtime import WorkerRuntime

log = logging.getLogger("registry.host")

EXIT_WATCHDOG = 75
"""The watchdog's exit code (the node's old exit code for the same event)."""
NODE_PID_ENV = "REGISTRY_NODE_PID"
HOST_NICE = 10
"""How much lower than the control process a host runs (``os.nice`` increment)."""
WATCHDOG_PERIOD_S = 0.02
"""Longest the watchdog sleeps between checks."""
PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(0)  # the control process is already gone


def error_reply(exc: BaseException) -> tuple[str, str]:
    """(error class, detail) of a call that failed; the control process rebuilds the
    exception from these (``supervisor._call_error``)."""
    if isinstance(exc, NoLease):
        return "no_lease", ""
    if isinstance(exc, NotHere):
        return "not_here", exc.why
    if isinstance(exc, WorkerFailed):
        return "failed", exc.reason
    if isinstance(exc, CallTimeout | asyncio.CancelledError):
        return "timeout", ""
    if isinstance(exc, LimitExceeded):
        return f"limit:{exc.reason}", str(exc)
    return "failed", f"{type(exc).__name__}: {exc}"


_START_REASONS = {reason.value: reason for reason in StartReason}
"""By value: ``StartReason(value)`` per start was a visible part of a bulk start."""


def _effect(command: pb.HostCommand) -> Effect | None:
    kind = command.WhichOneof("kind")
    if kind == "start":
        s = command.start
        return Start(
            activation=Activation(
                name=s.name,
                kind=s.kind,
                args=s.args,
                token=s.token,
                reason=_START_REASONS.get(s.reason) or StartReason(s.reason),
                state=s.state if s.has_state else None,
                restored_from=s.restored_from,
                restart=restart_from_host(s) if s.restart_mode else None,
                reminders=reminders_from_host(s) if s.reminders else (),
            )
        )
    if kind == "stop":
        return Stop(
            name=command.stop.name, token=command.stop.token, reason=StopReason(command.stop.reason)
        )
    if kind == "begin_handoff":
        b = command.begin_handoff
        return BeginHandoff(name=b.name, token=b.token, deadline_tick=0)
    return None


def call_stats_to_pb(kinds: dict[str, KindCalls]) -> pb.CallStats:
    return pb.CallStats(
        kinds=[
            pb.KindCalls(
                kind=kind,
                ok=calls.results["ok"],
                error=calls.results["error"],
                cancelled=calls.results["cancelled"],
                buckets=calls.buckets,
                seconds=calls.seconds,
            )
            for kind, calls in sorted(kinds.items())
        ]
    )


class Host:
    """One worker host (see the module rules)."""

    def __init__(self, sock: socket.socket, lease_sock: socket.socket, init: pb.HostInit) -> None:
        self.sock = sock
        self.lease_sock = lease_sock
        self.init = init
        self.until = 0.0
        """The sub-lease (rule 3); written by the lease thread only."""
        self._done: asyncio.Future[None] | None = None
        self._reader: FrameReader[pb.ToHost] = FrameReader(pb.ToHost)

    async def run(self, kinds: dict[str, type], hello: pb.HostHello) -> None:
        loop = asyncio.get_running_loop()
        self.loop = loop
        self._done = loop.create_future()
        self.writer = FrameWriter(self.sock, loop, from_host, self._lost)
        init = self.init
        self.checkpoints = HostCheckpoints(self._send_now)
        self._freezer = BulkFreezer(thaw=True)
        """Starting activations in bulk (a failover, a rebalance, 100k registrations),
        full collections rescanned every live one: freezing them cut the host's CPU on
        such a bulk by ~20 %, for ~0.9 KB more RSS per idle activation (issue 21).
        Thawed when the bulk shrinks (user objects may hold cycles)."""
        self.runtime = WorkerRuntime(
            node=init.node,
            kinds=kinds,
            reports=self,
            lease_holds=self._lease_holds,
            fence_grace=init.fence_grace,
            handoff_deadline=init.handoff_deadline,
            max_state_bytes=init.max_state_bytes,
            mailbox_limit=init.mailbox_limit,
            mailbox_bytes=init.mailbox_bytes,
            on_finished=self._finished,
            checkpoint=self.checkpoints.request,
            on_quit=self._quit,
            remind=self.checkpoints.remind,
            on_activity=self._activity,
        )
        self.calls: HostCalls | None = None
        if init.call_bind:  # rule 8
            self.calls = HostCalls(self.runtime, init)
            try:
                _, hello.call_port = await serve(self.calls, init)
            except (OSError, RuntimeError) as exc:
                hello.error = f"worker host {init.host}: no call port on {init.call_bind}: {exc}"
        self.writer.put(pb.HostEvent(hello=hello))
        self.writer.flush()
        if hello.error:
            return
        # The control process's collection thresholds: with CPython's (700, 10, 10) a
        # host starting activations in bulk spent a quarter of its time in young
        # collections (in-process, 50k starts: 24.5 -> 18.2 µs of CPU each).
        tune_gc()
        loop.add_reader(self.sock.fileno(), self._readable)
        threading.Thread(target=self._watch_lease, name="host-lease", daemon=True).start()
        reporting = loop.create_task(self._report_calls(), name="host-call-stats")
        try:
            await self._done
        finally:
            reporting.cancel()

    # -- threads -----------------------------------------------------------------------

    def _watch_lease(self) -> None:
        """The lease thread (rules 4 and 5): applies sub-leases as they arrive on the
        lease socket, and exits the process once one has run out by ``fence_grace``
        while activations may still run."""
        grace = self.init.fence_grace
        reader: FrameReader[pb.ToHost] = FrameReader(pb.ToHost)
        poller = select.poll()
        poller.register(self.lease_sock.fileno(), select.POLLIN)
        wait_ms = 0
        while True:
            self._take_sub_leases(reader, poller, wait_ms)
            # The time first, then whatever arrived by now: a thread that got no CPU or
            # GIL for a while (a niced host on a busy machine, a long collection, a big
            # frame parsed) must not judge a sub-lease the control process renewed in
            # time. A renewal queued before the verdict proves the control process was
            # not silent; one that lapsed for real is fenced by the control process
            # itself (supervisor rule 2), which this thread only backs up.
            now = time.monotonic()
            self._take_sub_leases(reader, poller, 0)
            due = self.until + grace
            if now >= due and self.runtime.live_tasks > 0:
                os.write(
                    2,
                    f"host {self.init.host} of {self.init.node}: sub-lease ended "
                    f"{now - self.until:.3f} s ago with workers running; exiting\n".encode(),
                )
                os._exit(EXIT_WATCHDOG)
            wait_s = min(WATCHDOG_PERIOD_S, due - now) if due > now else WATCHDOG_PERIOD_S
            wait_ms = max(1, int(wait_s * 1000))

    def _take_sub_leases(
        self, reader: FrameReader[pb.ToHost], poller: select.poll, wait_ms: int
    ) -> None:
        """Apply every sub-lease that arrives within ``wait_ms`` (0: just the ones
        already queued), in order: the last one sent is the one that holds."""
        while poller.poll(wait_ms):
            wait_ms = 0
            try:
                data = self.lease_sock.recv(READ_CHUNK)
            except BlockingIOError:
                return
            if not data:  # the control process is gone; the work socket ends us
                poller.unregister(self.lease_sock.fileno())
                return
            for frame in reader.feed(data):
                for command in frame.commands:
                    if command.HasField("sub_lease"):
                        self.until = command.sub_lease.until

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(exc)
            return
        if not data:
            self._lost(None)
            return
        commands = [c for frame in self._reader.feed(data) for c in frame.commands]
        if commands:
            self._on_commands(commands)

    # -- commands (on the loop) --------------------------------------------------------

    def _on_commands(self, commands: Sequence[pb.HostCommand]) -> None:
        effects: list[Effect] = []
        for command in commands:
            effect = _effect(command)
            if effect is not None:
                effects.append(effect)
                continue
            if effects:
                self.runtime.apply(effects)
                effects = []
            kind = command.WhichOneof("kind")
            if kind == "call":
                self._call(command.call)
            elif kind == "cast":
                self._cast(command.cast)
            elif kind == "shutdown":
                self.loop.create_task(self._shutdown())
            elif kind == "checkpoint_done":
                self.checkpoints.done(command.checkpoint_done)
            elif kind == "reload_tokens" and self.calls is not None and self.calls.tokens:
                self.calls.tokens.reload()
        if effects:
            self.runtime.apply(effects)
        self._freezer.grew(self.runtime.live_tasks)

    def _call(self, call: pb.HostCall) -> None:
        try:
            reply = self.runtime.submit_call(call.name, call.payload)
        except RegistryError as exc:
            self._reply(call.id, call.name, None, exc)
            return
        timer = self.loop.call_at(call.deadline, reply.cancel)  # loop.time() is monotonic

        def done(future: asyncio.Future[bytes], id: int = call.id, name: str = call.name) -> None:
            timer.cancel()
            if future.cancelled():
                self._reply(id, name, None, asyncio.CancelledError())
            elif (exc := future.exception()) is not None:
                self._reply(id, name, None, exc)
            else:
                self._reply(id, name, future.result(), None)

        reply.add_done_callback(done)

    def _reply(self, id: int, name: str, payload: bytes | None, exc: BaseException | None) -> None:
        event = pb.HostEvent()
        out = event.reply  # filled in place: a nested message passed in would be copied
        out.id, out.token = id, self.runtime.token_of(name) or 0
        if exc is None:
            out.payload = payload or b""
        else:
            out.error, out.message = error_reply(exc)
        self.writer.put(event)

    def _cast(self, cast: pb.HostCast) -> None:
        try:
            self.runtime.submit_cast(cast.name, cast.payload)
        except RegistryError as exc:
            self._reply(cast.id, cast.name, None, exc)  # refused: the caller hears why
            return
        self._reply(cast.id, cast.name, b"", None)  # in the mailbox
        # Now: the worker runs on this loop's next turn, and may block it for long.
        self.writer.flush()

    async def _shutdown(self) -> None:
        await self.runtime.shutdown()
        self.writer.put(pb.HostEvent(stopped=pb.HostStopped()))

    def _lost(self, exc: BaseException | None) -> None:
        if exc is not None:
            log.error("host %d: connection to the control process failed: %s", self.init.host, exc)
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    async def _report_calls(self) -> None:
        """Every ``REPORT_S``: the calls answered since the last report, by kind."""
        while True:
            await asyncio.sleep(REPORT_S)  # a reporting period, not a wait for a condition
            kinds = self.runtime.call_stats.drain()
            if kinds:
                self.writer.put(pb.HostEvent(call_stats=call_stats_to_pb(kinds)))

    def _activity(self, name: str, token: int, active: bool) -> None:
        self.writer.put(pb.HostEvent(activity=pb.Activity(name=name, token=token, active=active)))

    def _quit(self, name: str, token: int) -> None:
        self.writer.put(pb.HostEvent(quit=pb.Quit(name=name, token=token)))

    def _send_now(self, event: pb.HostEvent) -> None:
        self.writer.put(event)
        self.writer.flush()  # the worker awaits the answer: do not wait for a batch

    def _lease_holds(self) -> bool:
        return time.monotonic() < self.until

    # -- RuntimeReports ----------------------------------------------------------------

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        report = pb.HandoffReport(name=name, token=token, has_state=state is not None)
        report.state = state or b""
        self.writer.put(pb.HostEvent(handoff=report))

    def handoff_ignored(self, name: str, token: int) -> None:
        self.writer.put(
            pb.HostEvent(handoff=pb.HandoffReport(name=name, token=token, ignored=True))
        )

    def fatal(self, reason: str) -> None:
        self.writer.put(pb.HostEvent(fatal=pb.HostFatal(reason=reason)))

    def _finished(self, name: str, token: int, failure: str) -> None:
        ended = pb.ActivationEnded(name=name, token=token, failure=failure)
        self.writer.put(pb.HostEvent(ended=ended))


def _read_init(sock: socket.socket) -> pb.HostInit:
    reader: FrameReader[pb.ToHost] = FrameReader(pb.ToHost)
    while True:
        data = sock.recv(READ_CHUNK)
        if not data:
            os._exit(0)
        frames = reader.feed(data)
        if frames:
            command = frames[0].commands[0]
            if not command.HasField("init") or len(frames) > 1 or len(frames[0].commands) > 1:
                raise SystemExit("worker host: the first frame must hold only HostInit")
            return command.init


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="registry.node.hosts.main")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--lease-fd", type=int, required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--nice", type=int, default=HOST_NICE)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=FORMATS, default="text")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    os.environ[NODE_PID_ENV] = str(args.parent)
    if args.nice:
        os.nice(args.nice)
    sock = socket.socket(fileno=args.fd)
    init = _read_init(sock)  # blocking: nothing else to do before it
    configure(args.log_level, init.node, args.log_format, process=f"host {init.host}")
    from registry.core.errors import ConfigError
    from registry.node.workers import load_kinds

    hello = pb.HostHello(pid=os.getpid())
    kinds: dict[str, type] = {}
    try:
        kinds = dict(load_kinds(tuple(init.worker_modules)))
    except ConfigError as exc:
        hello.error = str(exc)
    hello.kinds.extend(sorted(kinds))
    if hello.error:
        with contextlib.suppress(OSError):  # the control process may have given up
            sock.sendall(encode(pb.FromHost(events=[pb.HostEvent(hello=hello)])))
        return 2
    sock.setblocking(False)
    lease_sock = socket.socket(fileno=args.lease_fd)
    lease_sock.setblocking(False)
    run_loop(Host(sock, lease_sock, init).run(kinds, hello))  # it says hello
    logging.shutdown()
    if hello.error:
        os._exit(2)
    os._exit(0)  # user threads must not keep a host alive once its control process is gone


if __name__ == "__main__":
    sys.exit(main())
