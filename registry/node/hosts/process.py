"""One worker host process as the control process sees it: spawn, sockets, kill.

``HostProcess`` lives as long as the supervisor: each (re)start is a new *generation*
(a new process, new sockets). It owns the process-level mechanics; what to run where
and when to kill is ``HostSupervisor``'s policy. Rules:

- The host gets two socket pairs (``pass_fds``): the *work* socket (effects, calls,
  casts; read here by the event loop) and the *lease* socket (sub-leases only; read by
  a thread of the host, so renewals reach a host whose loop a worker blocks).
- Frames from the host are parsed as protobuf (never unpickled); a frame that does not
  parse, or a broken connection, gets the host killed: it is treated as crashed.
- ``kill`` is SIGKILL, then the sockets close and every call waiting on this process
  fails with ``NotHere``. Only reaping (``proc.wait()``) proves the process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Callable

from registry.core.errors import ConfigError
from registry.core.state import Activation
from registry.node.hosts.frames import READ_CHUNK, FrameError, FrameReader, FrameWriter, to_host
from registry.node.logs import configured_format
from registry.v1 import host_pb2 as pb
from registry.worker.errors import NotHere

log = logging.getLogger("registry.hosts")


class HostProcess:
    """One host's process and what the control process knows of it (module rules)."""

    def __init__(self, index: int, on_event: Callable[[HostProcess, pb.HostEvent], None]) -> None:
        self.index = index
        self._on_event = on_event
        self.generation = 0
        """Bumped per process (and once more when it is reaped), so a timer armed for a
        dead one does nothing."""
        self.proc: asyncio.subprocess.Process | None = None
        self.sock: socket.socket | None = None
        self.writer: FrameWriter | None = None
        self.lease_sock: socket.socket | None = None
        self.lease_writer: FrameWriter | None = None
        self.connected = False
        """Said hello and not killed: effects, calls and casts may be sent."""
        self.closing = False
        self.hello: asyncio.Future[pb.HostHello] | None = None
        self.stopped: asyncio.Future[None] | None = None
        self.desired: dict[str, Activation] = {}
        """What the core wants running here (restarted after a crash)."""
        self.live: dict[str, int] = {}
        """Name → highest token whose code may be running (started, not reported
        ended). An int, not a set per name: 100k names are 100k fewer objects for the
        control process's garbage collector."""
        self._older: dict[str, set[int]] = {}
        """Lower tokens of a name still ending beside ``live`` (rare: a superseded one)."""
        self.failed: dict[str, tuple[int, str]] = {}
        self.handoffs: dict[str, int] = {}
        """Names asked to ``begin_handoff`` and not answered yet → their tokens (a dict:
        a stop looks its name up, and a rebalance stops thousands in one Ready)."""
        self.calls: dict[int, tuple[asyncio.Future[bytes], str, float]] = {}
        self.restarts = 0
        self.deaths: deque[float] = deque()
        self.sent_until = -1.0
        self.call_address = ""
        """This process's own Call/Cast port as clients dial it (``""``: none)."""
        self.passive: dict[str, int] = {}
        """Name → token of activations here with no instance (lazy, passivated)."""

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def live_below(self, name: str, token: int) -> bool:
        """Whether code of ``name`` with a token ≤ ``token`` may still run here."""
        current = self.live.get(name)
        if current is None:
            return False
        return current <= token or any(t <= token for t in self._older.get(name, ()))

    def started(self, name: str, token: int) -> None:
        current = self.live.get(name)
        if current is None or current == token:
            self.live[name] = token
            return
        self._older.setdefault(name, set()).add(min(current, token))
        self.live[name] = max(current, token)

    def ended(self, name: str, token: int) -> None:
        older = self._older.get(name)
        if self.live.get(name) == token:
            if older:
                self.live[name] = max(older)
                older.discard(self.live[name])
            else:
                del self.live[name]
        elif older is not None:
            older.discard(token)
        if older is not None and not older:
            del self._older[name]

    def forget_live(self) -> list[tuple[str, int]]:
        """Forget every live activation (its process is gone); return them."""
        gone = [(name, token) for name, token in self.live.items()]
        gone += [(name, token) for name, older in self._older.items() for token in older]
        self.live.clear()
        self._older.clear()
        return sorted(gone)

    # -- spawn -------------------------------------------------------------------------

    async def launch(self, init: pb.HostInit, log_level: str) -> asyncio.subprocess.Process:
        """Start a new process, send it ``init``; ``self.hello`` resolves when it is up."""
        loop = asyncio.get_running_loop()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        lease_mine, lease_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        # The host imports the same modules the control process could (a checkout's
        # tests, the directory `python -m` was started in).
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "registry.node.hosts.main",
                "--fd",
                str(theirs.fileno()),
                "--lease-fd",
                str(lease_theirs.fileno()),
                "--parent",
                str(os.getpid()),
                "--log-level",
                log_level,
                "--log-format",
                configured_format(),
                pass_fds=(theirs.fileno(), lease_theirs.fileno()),
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        finally:
            theirs.close()
            lease_theirs.close()
        mine.setblocking(False)
        lease_mine.setblocking(False)
        self.generation += 1
        self.proc, self.sock, self.lease_sock = proc, mine, lease_mine
        self.writer = FrameWriter(mine, loop, to_host, self._broken)
        self.lease_writer = FrameWriter(lease_mine, loop, to_host, self._broken)
        self.hello = loop.create_future()
        self.stopped = loop.create_future()
        self.sent_until = -1.0
        reader: FrameReader[pb.FromHost] = FrameReader(pb.FromHost)
        loop.add_reader(mine.fileno(), self._readable, reader)
        self.writer.put(pb.HostCommand(init=init))  # alone in the first frame
        return proc

    # -- traffic -----------------------------------------------------------------------

    def send(self, command: pb.HostCommand) -> None:
        if self.writer is not None and self.connected:
            self.writer.put(command)

    def send_lease(self, until: float) -> None:
        if self.lease_writer is not None and self.connected:
            self.lease_writer.put(pb.HostCommand(sub_lease=pb.SubLease(until=until)))

    def _readable(self, reader: FrameReader[pb.FromHost]) -> None:
        assert self.sock is not None
        try:
            data = self.sock.recv(READ_CHUNK)
        except BlockingIOError:
            return
        except OSError as exc:
            self._broken(exc)
            return
        if not data:
            self._broken(None)
            return
        try:
            frames = reader.feed(data)
        except FrameError as exc:
            self.kill(f"protocol error: {exc}")
            return
        for frame in frames:
            for event in frame.events:
                self._on_event(self, event)

    # -- death -------------------------------------------------------------------------

    def kill(self, why: str, *, quiet: bool = False) -> None:
        """SIGKILL the process (if it still runs) and drop its sockets."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        if not (self.closing or quiet):
            log.critical("killing worker host %d (pid %d): %s", self.index, proc.pid, why)
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        self.disconnect()

    def _broken(self, exc: BaseException | None) -> None:
        if self.connected and not self.closing:
            log.error("worker host %d: connection lost (%s)", self.index, exc or "closed")
        self.kill("its connection broke", quiet=True)

    def disconnect(self) -> None:
        self.connected = False
        self.call_address = ""
        self.passive.clear()
        for writer in (self.writer, self.lease_writer):
            if writer is not None:
                writer.close()
        self.writer = self.lease_writer = None
        if self.hello is not None and not self.hello.done():
            self.hello.set_exception(
                ConfigError(f"worker host {self.index} exited before it was ready")
            )
        if self.sock is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.lease_sock is not None:
            self.lease_sock.close()
            self.lease_sock = None
        for future, name, _ in self.calls.values():
            if not future.done():
                future.set_exception(NotHere(name, "its worker host stopped; retry"))
        self.calls.clear()
