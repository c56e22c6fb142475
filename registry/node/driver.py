"""The IO shell around one ``Replica``: real time, disk, network, workers.

Theory of operation
-------------------
One task, ``_run``, owns the replica; everything else talks to it through ``_inputs``.
The task runs the one Ready loop (``registry.node.ready_loop``, shared with the shell
simulator): each turn it feeds queued inputs, ticks the replica once per ``timing.tick``
of *monotonic* time that has passed (catching up after a stall, so a paused process
never believes its lease lasted longer than it did), then drains Ready values in
etcd-io/raft's order: persist (fsync, off the event loop) → send → apply (``_apply``:
resolve waiting proposals, notify watchers, run worker effects) → ``advance``. Nothing
reaches the replica between ``ready()`` and ``advance()`` because nothing but this task
touches it. Storage is any ``Storage`` (``FileStorage`` here, a simulated disk in
``registry.sim.shell``).

The worker runtime checks ``lease_holds()`` before every message it dispatches; that check
uses the monotonic deadline derived from the last Ready, so it is right even when the
core loop has not caught up yet.

Fail-stop (``registry.node.fail_stop``): any exception out of the loop — a bug, an
invariant failure, an ``OSError`` from a persist (memory is then ahead of the disk) —
ends the process with one log line and a distinct exit code; nothing is retried. Each
turn stamps ``_turned``; ``alive()`` (``/healthz``) turns false when the loop has not
turned for a while (a hung disk, a blocked event loop), before any exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from registry.core.commands import Command
from registry.core.controls import Control
from registry.core.errors import NotLeader, RegistryError
from registry.core.membership import MemberAck
from registry.core.messages import Ready, Role
from registry.core.replica import PeerMessage, Replica, ReplicaReady
from registry.core.state import Result
from registry.core.view import ReplicaView
from registry.node.config import NodeConfig
from registry.node.fail_stop import StorageIOFailed, classify, fail_stop
from registry.node.faults import CoreFault
from registry.node.lease_log import describe_lapse
from registry.node.ready_loop import ReadyLoop
from registry.node.storage import Loaded
from registry.node.storage_protocol import Storage

log = logging.getLogger("registry.node")
R = TypeVar("R")


class ProposalLost(RegistryError):
    """Leadership changed before the proposal committed; it was not applied. Retry."""


class NoQuorum(RegistryError):
    """This node cannot reach enough voters to make progress."""


@dataclass(slots=True)
class _Waiter:
    command: Command
    future: asyncio.Future[Result]


@dataclass(slots=True)
class _Propose:
    command: Command
    future: asyncio.Future[tuple[int, Result]]


@dataclass(slots=True)
class _Read:
    future: asyncio.Future[int]


@dataclass(slots=True)
class _Handoff:
    name: str
    token: int
    state: bytes | None
    ignored: bool = False


@dataclass(slots=True)
class _Stopped:
    name: str
    token: int


@dataclass(slots=True)
class _Control:
    """An operator input (``registry.core.controls``) for the core loop; its result or
    error goes to ``future`` (none: a failure is only logged)."""

    control: Control[Any]
    future: asyncio.Future[Any] | None = None


PACE_HOLD_MAX_S = 5.0
"""Longest a client write is held back for a lagging member (``write_pace`` rule 3)."""

_Input = PeerMessage | _Propose | _Read | _Handoff | _Stopped | _Control
DriverInput = _Input
"""What the Driver's Ready loop feeds the replica (``ReadyLoop[DriverInput]``)."""


@dataclass(slots=True)
class Listeners:
    """Callbacks the servicers hang on the driver."""

    on_applied: list[Callable[[ReplicaReady], None]] = field(default_factory=list)


class Driver:
    def __init__(
        self,
        cfg: NodeConfig,
        storage: Storage,
        loaded: Loaded,
        *,
        kinds: tuple[str, ...],
        send: Callable[[list[PeerMessage]], None],
        effects: Callable[[ReplicaReady], None],
        rng: random.Random | None = None,
        fatal: Callable[[int, str], None] = fail_stop,
        clock: Callable[[], float] = time.monotonic,
        ready_loop: type[ReadyLoop[DriverInput]] = ReadyLoop,
    ) -> None:
        """``clock`` is the monotonic clock ticks and leases follow (the simulator passes
        its virtual time); ``ready_loop`` lets the simulator plant a shell bug in a
        subclass. Production passes neither."""
        self.cfg = cfg
        self.storage = storage
        self.incarnation = loaded.incarnation + 1
        self._fatal = fatal
        """Called with (exit code, one-line reason) when the loop fails; exits."""
        # A restart is a new incarnation (the log gives the old one's names new tokens):
        # it must be on disk before anything is sent with it.
        try:
            storage.persist(incarnation=self.incarnation, ready=Ready(), compaction=None)
        except OSError as err:
            fatal(*classify(StorageIOFailed(err)))
            raise
        timing = cfg.timing
        self._timing = timing
        voters = frozenset() if cfg.learner else frozenset(cfg.peers or {cfg.id: cfg.address})
        self.replica = Replica(
            timing.raft(
                cfg.id,
                voters=voters,
                snapshot_threshold=cfg.snapshot_entries,
                max_bytes_per_msg=cfg.max_append_bytes,
            ),
            timing.membership(),
            rng or random.Random(),
            incarnation=self.incarnation,
            persisted=loaded.persisted,
            address=cfg.address,
            roles=cfg.roles,
            kinds=kinds,
            # JSON until every peer reads binary (``PeerTransport``, rolling upgrades).
            binary_entries=not set(cfg.peers) - {cfg.id},
        )
        self._effects = effects
        self.listeners = Listeners()
        self._inputs: asyncio.Queue[_Input] = asyncio.Queue()
        self._waiters: dict[int, _Waiter] = {}
        self._reads: dict[int, _Read] = {}
        self._read_seq = 0
        self._task: asyncio.Task[None] | None = None
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._held: collections.deque[tuple[float, _Propose]] = collections.deque()
        """Client proposals held back while a leased member lags in applying
        (``registry.core.write_pace``), with when each was held."""
        self._clock = clock
        self._turned = clock()
        """When the core loop last went round (``alive``)."""
        self._core_fault = CoreFault.from_env()
        self._view: ReplicaView | None = None
        """Built on demand, dropped on every input, tick and Ready (``view``)."""
        self.ready_loop = ready_loop(
            self.replica,
            storage,
            tick=timing.tick,
            clock=clock,
            send=send,
            apply=self._apply,
            advanced=self._wake_applied,
            feed=self._feed,
            on_turn=self._on_turn,
            changed=self._drop_view,
            gathers=lambda item: isinstance(item, _Propose),
        )

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="registry-core")

    async def stop(self) -> None:
        self.ready_loop.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for waiter in self._waiters.values():
            if not waiter.future.done():
                waiter.future.set_exception(ProposalLost("the node is shutting down"))
        self._waiters.clear()
        for _, held in self._held:
            if not held.future.done():  # never proposed: nothing of it can commit
                held.future.set_exception(NotLeader(""))
        self._held.clear()

    # -- the read surface --------------------------------------------------------------

    @property
    def view(self) -> ReplicaView:
        """The replica as the shell may read it (``registry.core.view``), current as of
        the last input, tick or Ready; built lazily, so reads between changes share one."""
        view = self._view
        if view is None:
            view = self._view = self.replica.view()
        return view

    # -- inputs (any task) -------------------------------------------------------------

    def deliver(self, msg: PeerMessage) -> None:
        if isinstance(msg, MemberAck):  # ReadyLoop rule 11: not behind a slow persist
            self.ready_loop.renew(msg)
            self._view = None
            return
        self._inputs.put_nowait(msg)

    async def propose(self, command: Command) -> tuple[int, Result]:
        """Propose on this node (must be the leader); wait until it is applied."""
        future: asyncio.Future[tuple[int, Result]] = asyncio.get_running_loop().create_future()
        self._inputs.put_nowait(_Propose(command=command, future=future))
        return await future

    async def read_index(self) -> int:
        """A linearizable read point: once applied locally, local reads are current."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._inputs.put_nowait(_Read(future=future))
        return await future

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        self._inputs.put_nowait(_Handoff(name=name, token=token, state=state))

    def handoff_ignored(self, name: str, token: int) -> None:
        self._inputs.put_nowait(_Handoff(name=name, token=token, state=None, ignored=True))

    def stopped(self, name: str, token: int) -> None:
        """The activation ``(name, token)`` has really ended (``Replica.stopped``)."""
        self._inputs.put_nowait(_Stopped(name=name, token=token))

    def submit(self, control: Control[Any]) -> None:
        """Hand ``control`` to the core; a refusal (say, ``NotLeader``) is logged."""
        self._inputs.put_nowait(_Control(control=control))

    async def request(self, control: Control[R]) -> R:
        """Hand ``control`` to the core and wait for its result (or its error)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._inputs.put_nowait(_Control(control=control, future=future))
        return await future

    async def wait_for(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``condition()`` holds after some Ready, or ``timeout`` seconds."""
        deadline = self._clock() + timeout
        while not condition():
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            event = asyncio.Event()

            def wake(_ready: ReplicaReady, event: asyncio.Event = event) -> None:
                event.set()

            self.listeners.on_applied.append(wake)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, 0.25))
            finally:
                self.listeners.on_applied.remove(wake)
        return True

    def lease_holds(self) -> bool:
        return self._clock() < self.ready_loop.lease_deadline

    def lease_deadline(self) -> float:
        """When this node's member lease ends (``time.monotonic()`` seconds; in the past
        when it holds none). Worker hosts get sub-leases that never outlast it."""
        return self.ready_loop.lease_deadline

    def lease_remaining_s(self) -> float:
        return max(0.0, self.ready_loop.lease_deadline - self._clock())

    def alive(self, within_s: float) -> bool:
        """The core loop went round in the last ``within_s`` seconds (``/healthz``)."""
        return self._clock() - self._turned < within_s

    # -- the core loop -----------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self.ready_loop.run(self._inputs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fatal(*classify(exc))
            raise

    def _on_turn(self) -> None:
        self._turned = self._clock()
        if self._core_fault is not None:
            self._core_fault.check()
        self._release_held()

    def _release_held(self) -> None:
        """Propose held writes, oldest first, once no leased member lags (or one has
        waited ``PACE_HOLD_MAX_S``; a non-leader proposes them to fail them at once)."""
        held = self._held
        while held:
            since, item = held[0]
            if self.replica.writes_lag() and self._clock() - since < PACE_HOLD_MAX_S:
                return
            held.popleft()
            self._propose(item)

    def _feed(self, item: _Input) -> None:
        self._view = None
        replica = self.replica
        if isinstance(item, _Propose):
            if self._held or replica.writes_lag():
                self._held.append((self._clock(), item))  # in order, behind the others
            else:
                self._propose(item)
        elif isinstance(item, _Read):
            self._read_seq += 1
            try:
                replica.raft.read_index(self._read_seq)
            except NotLeader as exc:
                item.future.set_exception(exc)
                return
            self._reads[self._read_seq] = item
        elif isinstance(item, _Control):
            self._control(item)
        elif isinstance(item, _Stopped):
            replica.stopped(item.name, item.token)
        elif isinstance(item, _Handoff):
            if item.ignored:
                replica.handoff_ignored(item.name, item.token)
            else:
                replica.handoff_done(item.name, item.token, item.state)
        else:
            replica.step(item)

    def _propose(self, item: _Propose) -> None:
        try:
            index = self.replica.propose(item.command)
        except RegistryError as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            return
        inner: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiters[index] = _Waiter(command=item.command, future=inner)
        outer = item.future

        def done(f: asyncio.Future[Result], index: int = index) -> None:
            # Retrieved even when nobody waits any more (else asyncio logs it).
            error = None if f.cancelled() else f.exception()
            if outer.done():
                return
            if f.cancelled():
                outer.cancel()
            elif error is not None:
                outer.set_exception(error)
            else:
                outer.set_result((index, f.result()))

        inner.add_done_callback(done)

    def _control(self, item: _Control) -> None:
        future = item.future
        try:
            result = self.replica.control(item.control)
        except RegistryError as exc:
            if future is None:
                log.warning("%s failed: %s", type(item.control).__name__, exc)
            elif not future.done():
                future.set_exception(exc)
            return
        if future is not None and not future.done():
            future.set_result(result)

    def _drop_view(self) -> None:
        self._view = None

    def _apply(self, ready: ReplicaReady) -> None:
        """The Ready loop's apply step (after persist and send, before ``advance``)."""
        if ready.incarnation is not None:
            self.incarnation = ready.incarnation
        if ready.fenced is not None:
            log.warning("%s", describe_lapse(ready.fenced, self._timing, ready.incarnation))
        soft = ready.raft.soft_state
        if soft is not None:
            handed = self.replica.view().handover_from if soft.role is Role.LEADER else ""
            log.info(
                "raft: %s, leader %s, term %d%s",
                soft.role.value,
                soft.leader or "(none)",
                self.replica.raft.term,
                f", with {handed}'s failure-detector counts (handover)" if handed else "",
            )
        self._resolve(ready)
        self._effects(ready)
        for listener in self.listeners.on_applied:
            listener(ready)

    def _wake_applied(self) -> None:
        applied = self.replica.raft.applied_index
        still = []
        for index, future in self._applied_waiters:
            if index <= applied:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((index, future))
        self._applied_waiters = still

    def _resolve(self, ready: ReplicaReady) -> None:
        for applied in ready.applied:
            waiter = self._waiters.pop(applied.index, None)
            if waiter is None or waiter.future.done():
                continue
            if applied.command == waiter.command:
                waiter.future.set_result(applied.result)
            else:
                waiter.future.set_exception(
                    ProposalLost("leadership changed before the write committed; retry")
                )
        applied_to = self.replica.raft.applied_index
        if ready.raft.committed:
            applied_to = ready.raft.committed[-1].index
        # Indexes passed without our entry being seen: covered by a snapshot installed
        # after this node lost leadership. The write may or may not be in it.
        for index in [i for i in self._waiters if i <= applied_to]:
            waiter = self._waiters.pop(index)
            if not waiter.future.done():
                waiter.future.set_exception(
                    ProposalLost(
                        "leadership changed while the write was in flight; it may or may "
                        "not have been applied: look it up before retrying"
                    )
                )
        for state in ready.raft.read_states:
            read = self._reads.pop(state.context, None)
            if read is not None and not read.future.done():
                read.future.set_result(state.index)
        if self.replica.raft.role is not Role.LEADER and not self.replica.raft.leader:
            for read in self._reads.values():
                if not read.future.done():
                    read.future.set_exception(NotLeader(""))
            self._reads.clear()

    # -- queries for servicers ---------------------------------------------------------

    async def wait_applied(self, index: int, timeout: float) -> None:
        """Wait until the local replica has applied ``index`` (for consistent reads)."""
        if self.replica.raft.applied_index >= index:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, future))
        await asyncio.wait_for(future, timeout)
