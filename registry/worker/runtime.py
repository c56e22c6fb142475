"""The asyncio runtime that executes the core's worker effects on one node.

Theory of operation
-------------------
The core (``registry.core.replica``) decides *what* runs here and emits effects: ``Start``,
``Stop`` and ``BeginHandoff``. The node hands each batch to ``WorkerRuntime.apply`` and
the runtime makes it so, one ``ActivationRunner`` (one task, one mailbox) per name:

- Effects for one name take effect in the order given. ``apply`` never blocks: an effect
  that must wait — a ``Start`` whose name still has an older activation, which is told to
  stop (``SUPERSEDED``) first — parks the name's later effects until that activation has
  ended. A new activation never starts beside an old one of the same name (G1).
- A ``Stop`` cancels the worker at once; a worker that is still running ``fence_grace``
  seconds later makes the runtime report ``fatal`` (once): the node must exit, because it
  no longer holds the lease the worker depends on.
- The runtime reports back through ``RuntimeReports``: ``handoff_done`` once the worker
  has fully stopped after a handoff (never earlier — the next owner starts on it), or
  ``handoff_ignored``. Reports are never made from inside ``apply``.
- Errors never escape to the node: an unknown kind or a worker that crashes too often
  becomes a ``failed`` activation, visible in ``status()`` and to callers.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from registry.core.errors import ConfigError
from registry.core.replica import BeginHandoff, Effect, Start, Stop
from registry.core.state import Activation
from registry.worker.activation import ActivationRunner, Checkpointer, Reminder, RunnerHooks
from registry.worker.api import StopCause, Worker
from registry.worker.call_stats import CallStats
from registry.worker.errors import NoLease, NotHere, WorkerFailed
from registry.worker.policy import ActivationState, ActivationStatus, Policy

EFFECTS_PER_TURN = 256
"""Effects the runtime applies per turn of the event loop (see ``apply``)."""

log = logging.getLogger("registry.worker")


class RuntimeReports(Protocol):
    """How the runtime reports back to the node (which feeds the core).

    Every method is called on the event loop, never from inside ``WorkerRuntime.apply``.
    The core takes no input between ``ready()`` and ``advance()``, so a node that awaits
    in that window should queue these reports and feed them afterwards.
    """

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        """The activation ``(name, token)`` has fully stopped after ``BeginHandoff``;
        ``state`` goes to the next owner (``None``: it starts fresh)."""

    def handoff_ignored(self, name: str, token: int) -> None:
        """The worker answered ``Ignore()`` and keeps running here."""

    def fatal(self, reason: str) -> None:
        """A worker did not stop within ``fence_grace``: the node must exit (G1). Called
        at most once per runtime; how to exit is the node's decision."""


@dataclass(slots=True, eq=False)
class _Slot:
    current: ActivationRunner | None = None
    backlog: deque[Effect] = field(default_factory=deque)
    """Effects not applied yet; the first may be a Start waiting for ``current`` to end."""
    waiter: asyncio.Task[None] | None = None


def _name_of(effect: Effect) -> str:
    return effect.activation.name if isinstance(effect, Start) else effect.name


def _cause(stop: Stop) -> StopCause:
    cause = StopCause.__members__.get(stop.reason.name)
    if cause is None:  # a reason the core added later: still stop, and say so
        log.warning("%s: unknown stop reason %s, stopping as SUPERSEDED", stop.name, stop.reason)
        return StopCause.SUPERSEDED
    return cause


class WorkerRuntime:
    """Runs this node's worker activations as the core's effects dictate.

    ``kinds`` maps each kind to its ``Worker`` subclass (whose ``kind`` must match).
    ``lease_holds`` tells whether this node holds its lease now; it is checked before
    every call and cast. Timing arguments are seconds:

    - ``fence_grace`` (0.5): a stopped worker must have ended within this, or ``fatal``.
    - ``handoff_deadline`` (2.0): ``begin_handoff`` must have answered within this (counted
      from ``BeginHandoff``), or the worker is stopped and moves without state.
    - ``max_state_bytes`` (1 MiB): larger handoff states are dropped with a logged error.
    - ``restart_backoff`` (0.05, 2.0): first and largest delay before restarting a crashed
      worker; it doubles per recent crash and is scaled by a jitter in [0.5, 1) drawn
      from ``rng`` (inject a seeded ``random.Random`` for reproducible runs).
    - ``max_restarts`` (5) within ``restart_window`` (10.0): one more crash marks the
      activation failed.
    - ``mailbox_limit`` (256) messages and ``mailbox_bytes`` (64 MiB) queued per
      activation: a call or cast over either is refused with ``MailboxFull``.

    ``on_finished(name, token, failure)``, if given, is told (never from inside ``apply``)
    when no code of an activation runs any more: its task ended, or it failed before it
    started; ``failure`` is why it gave up, ``""`` for a plain stop. A worker host reports
    this to the control process, which fences on it.

    ``checkpoint(name, token, state)``, if given, commits an activation's
    ``ctx.checkpoint`` (a worker host sends it to its control process); without it
    ``ctx.checkpoint`` raises ``RuntimeError``. ``on_quit(name, token)``, if given, is
    told when an activation's name must be unregistered (``ctx.stop(unregister=True)``,
    or a ``temporary`` name's activation stopped or crashed).

    All methods must be called from the event loop the runtime runs on.
    """

    def __init__(
        self,
        *,
        node: str,
        kinds: Mapping[str, type[Worker]],
        reports: RuntimeReports,
        lease_holds: Callable[[], bool],
        fence_grace: float = 0.5,
        handoff_deadline: float = 2.0,
        max_state_bytes: int = 1 << 20,
        restart_backoff: tuple[float, float] = (0.05, 2.0),
        max_restarts: int = 5,
        restart_window: float = 10.0,
        mailbox_limit: int = 256,
        mailbox_bytes: int = 64 << 20,
        rng: random.Random | None = None,
        on_finished: Callable[[str, int, str], None] | None = None,
        checkpoint: Checkpointer | None = None,
        on_quit: Callable[[str, int], None] | None = None,
        remind: Reminder | None = None,
        on_activity: Callable[[str, int, bool], None] | None = None,
    ) -> None:
        self.node = node
        self._on_finished = on_finished
        self._checkpoint = checkpoint
        self._on_quit = on_quit
        self._remind = remind
        self._on_activity = on_activity
        self._kinds = dict(kinds)
        self._reports = reports
        self._lease_holds = lease_holds
        self._policy = Policy(
            fence_grace=fence_grace,
            handoff_deadline=handoff_deadline,
            max_state_bytes=max_state_bytes,
            restart_backoff=restart_backoff,
            max_restarts=max_restarts,
            restart_window=restart_window,
            mailbox_limit=mailbox_limit,
            mailbox_bytes=mailbox_bytes,
        ).validate()
        self._check_kinds()
        self._rng = rng if rng is not None else random.Random()
        self._hooks = RunnerHooks(
            node=node,
            policy=self._policy,
            lease_holds=lease_holds,
            rng=self._rng,
            on_ignored=self._ignored,
            on_overrun=self._overrun,
            on_ended=self._ended,
            checkpoint=checkpoint,
            on_quit=self._quit,
            remind=remind,
            on_activity=self._activity,
        )
        self._slots: dict[str, _Slot] = {}
        self._pending: deque[Effect] = deque()
        """Effects not applied yet (beyond one turn's worth), in order."""
        self._feeder: asyncio.Task[None] | None = None
        self._closed = False
        self.call_stats = CallStats()
        """Calls answered here, by kind (``registry.worker.call_stats``)."""
        self._fatal_sent = False
        self._shutdown_task: asyncio.Task[None] | None = None
        self.live_tasks = 0
        """Activations whose task has started and not ended: code that may still run
        (an int, so a watchdog thread can read it while the loop is blocked)."""

    def _check_kinds(self) -> None:
        for kind, cls in self._kinds.items():
            given: object = cls  # the annotation promises a Worker class; check anyway
            if not (isinstance(given, type) and issubclass(given, Worker)):
                raise ConfigError(f"kinds[{kind!r}] is {cls!r}, not a Worker subclass")
            if getattr(cls, "kind", None) != kind:
                got = getattr(cls, "kind", "<unset>")
                raise ConfigError(f"kinds[{kind!r}] is {cls.__name__}, whose kind is {got!r}")

    # -- effects -----------------------------------------------------------------------

    def apply(self, effects: Sequence[Effect]) -> None:
        """Carry out the core's effects, in order, without blocking: up to
        ``EFFECTS_PER_TURN`` at once, the rest in later turns of the event loop (a node
        given 100k names at once must keep answering heartbeats while it starts them)."""
        if self._closed:
            if effects:
                log.warning(
                    "runtime of %s is shut down; ignoring %d effects", self.node, len(effects)
                )
            return
        self._pending.extend(effects)
        if self._feeder is None:
            self._apply_some()
            if self._pending:
                self._feeder = asyncio.get_running_loop().create_task(self._feed())

    async def _feed(self) -> None:
        try:
            while self._pending and not self._closed:
                await asyncio.sleep(0)  # let the node's loop run between turns
                self._apply_some()
        finally:
            self._feeder = None

    def _apply_some(self) -> None:
        pending = self._pending
        for _ in range(min(EFFECTS_PER_TURN, len(pending))):
            effect = pending.popleft()
            name = _name_of(effect)
            slot = self._slots.setdefault(name, _Slot())
            slot.backlog.append(effect)
            if slot.waiter is None:
                self._pump(name, slot)

    def _pump(self, name: str, slot: _Slot) -> None:
        while slot.backlog:
            blocker = self._step(name, slot, slot.backlog[0])
            if blocker is not None:
                loop = asyncio.get_running_loop()
                slot.waiter = loop.create_task(self._wait_then_pump(name, slot, blocker))
                return
            slot.backlog.popleft()
        slot.waiter = None
        self._forget_if_empty(name, slot)

    async def _wait_then_pump(self, name: str, slot: _Slot, blocker: ActivationRunner) -> None:
        if blocker.task is not None:
            await asyncio.wait({blocker.task})  # asyncio.wait never cancels what it waits on
        slot.waiter = None
        if not self._closed:
            self._pump(name, slot)

    def _step(self, name: str, slot: _Slot, effect: Effect) -> ActivationRunner | None:
        """Apply one effect now, or return the activation it must wait for."""
        current = slot.current
        if isinstance(effect, Start):
            spec = effect.activation
            if current is not None and (
                current.token > spec.token
                or (current.token == spec.token and current.stop_cause is None)
            ):
                log.debug("%s: ignoring Start %d (have %d)", name, spec.token, current.token)
                return None
            if current is not None and not current.finished:
                current.stop(StopCause.SUPERSEDED)
                return current
            slot.current = runner = self._new_runner(spec)
            runner.start()
            if runner.task is not None:
                self.live_tasks += 1
            elif self._on_finished is not None:  # failed before it started
                self._report(self._on_finished, runner.name, runner.token, runner.failure)
        elif isinstance(effect, Stop):
            if current is None or current.token > effect.token:
                log.debug("%s: nothing to stop for token %d", name, effect.token)
            elif current.finished:
                slot.current = None
            else:
                current.stop(_cause(effect))
        elif isinstance(effect, BeginHandoff):
            self._begin_handoff(slot, effect)
        return None

    def _begin_handoff(self, slot: _Slot, effect: BeginHandoff) -> None:
        current = slot.current
        if current is not None and current.token == effect.token and not current.finished:
            current.begin_handoff()
            return
        if current is not None and current.token > effect.token:
            log.warning("%s: BeginHandoff for old token %d ignored", effect.name, effect.token)
            return
        # Nothing of that token runs here (e.g. it failed): it can move at once, stateless.
        if current is not None and current.finished:
            slot.current = None
        self._report(self._reports.handoff_done, effect.name, effect.token, None)

    def _new_runner(self, spec: Activation) -> ActivationRunner:
        cls = self._kinds.get(spec.kind)
        error = ""
        if cls is None:
            error = f"no worker class for kind {spec.kind!r} on node {self.node}"
            log.error("cannot start %s#%d: %s", spec.name, spec.token, error)
        return ActivationRunner(spec, self._hooks, worker_cls=cls, error=error)

    def _forget_if_empty(self, name: str, slot: _Slot) -> None:
        idle = slot.current is None and not slot.backlog and slot.waiter is None
        if idle and self._slots.get(name) is slot:
            del self._slots[name]

    # -- callbacks from runners --------------------------------------------------------

    def _activity(self, runner: ActivationRunner, active: bool) -> None:
        if self._on_activity is not None:
            self._report(self._on_activity, runner.name, runner.token, active)

    def _quit(self, runner: ActivationRunner) -> None:
        if self._on_quit is not None:
            self._report(self._on_quit, runner.name, runner.token)
        else:
            log.warning("%s: asked to unregister itself, but no node listens", runner.name)

    def _ignored(self, runner: ActivationRunner) -> None:
        self._report(self._reports.handoff_ignored, runner.name, runner.token)

    def _ended(self, runner: ActivationRunner) -> None:
        self.live_tasks -= 1
        if self._on_finished is not None:
            failure = runner.failure if runner.state is ActivationState.FAILED else ""
            self._report(self._on_finished, runner.name, runner.token, failure)
        if runner.report_handoff:
            self._report(
                self._reports.handoff_done, runner.name, runner.token, runner.handoff_state
            )
        slot = self._slots.get(runner.name)
        if slot is None or slot.current is not runner:
            return
        if runner.state is not ActivationState.FAILED or runner.stop_cause is not None:
            slot.current = None  # a failed one stays, for status(), until it is stopped
            self._forget_if_empty(runner.name, slot)

    def _overrun(self, runner: ActivationRunner) -> None:
        cause = runner.stop_cause.value if runner.stop_cause else "stop"
        reason = (
            f"worker {runner.name} (token {runner.token}) did not stop within fence_grace "
            f"{self._policy.fence_grace:g} s after {cause}; the node must exit"
        )
        log.critical("%s", reason)
        if self._fatal_sent:
            return
        self._fatal_sent = True
        try:
            self._reports.fatal(reason)
        except Exception:
            log.exception("RuntimeReports.fatal raised")

    def _report(self, fn: Callable[..., None], *args: object) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("RuntimeReports.%s%r raised", getattr(fn, "__name__", fn), args)

        asyncio.get_running_loop().call_soon(run)

    # -- requests ----------------------------------------------------------------------

    def _serving(self, name: str) -> ActivationRunner:
        if self._closed:
            raise NotHere(name, "the node is shutting down")
        if not self._lease_holds():
            raise NoLease(self.node)
        slot = self._slots.get(name)
        runner = slot.current if slot is not None else None
        if runner is None:
            raise NotHere(name)
        if runner.state is ActivationState.FAILED:
            raise WorkerFailed(name, runner.failure)
        return runner

    async def call(self, name: str, payload: bytes, timeout: float) -> bytes:
        """Send ``payload`` to ``name``'s ``handle_call`` and return its reply.

        Raises ``NotHere`` (not running on this node, or stopped meanwhile), ``NoLease``,
        ``WorkerFailed`` (the worker raised, or the activation failed) or ``CallTimeout``
        (no reply within ``timeout`` seconds)."""
        return await self._serving(name).call(payload, timeout)

    def submit_call(self, name: str, payload: bytes) -> asyncio.Future[bytes]:
        """Queue a call without a task of its own and return the future of its reply (a
        worker host serves thousands of calls this way); cancel the future to give up.
        Raises what ``call`` raises when the call cannot be queued."""
        runner = self._serving(name)
        began = self.call_stats.began()  # an idle activation answers within submit_call
        reply = runner.submit_call(payload)
        self.call_stats.watch(runner.spec.kind, reply, began)
        return reply

    async def cast(self, name: str, payload: bytes) -> None:
        """Queue ``payload`` for ``name``'s ``handle_cast`` and return at once.

        Raises ``NotHere``, ``NoLease`` or ``WorkerFailed`` as ``call`` does, but only for
        what is known when it is queued; a later failure is only logged."""
        self.submit_cast(name, payload)

    def submit_cast(self, name: str, payload: bytes) -> None:
        """``cast`` without a coroutine (it never waits)."""
        self._serving(name).cast(payload)

    def running(self) -> dict[str, int]:
        """Name → token of every activation whose task is alive (including one still
        stopping); failed activations run nothing and are not listed."""
        return {
            name: slot.current.token
            for name, slot in sorted(self._slots.items())
            if slot.current is not None and not slot.current.finished
        }

    def token_of(self, name: str) -> int | None:
        """The token of ``name``'s live activation here, in O(1) (``running()`` walks
        every activation: fine for a status page, not for every call)."""
        slot = self._slots.get(name)
        current = slot.current if slot is not None else None
        return current.token if current is not None and not current.finished else None

    def status(self) -> dict[str, ActivationStatus]:
        """Name → status of every activation this runtime knows, failed ones included."""
        return {
            name: ActivationStatus(
                token=r.token,
                kind=r.spec.kind,
                state=r.state,
                restarts=r.restarts,
                last_error=r.last_error,
            )
            for name, slot in sorted(self._slots.items())
            if (r := slot.current) is not None
        }

    # -- shutdown ----------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop every activation (``on_stop(SHUTDOWN)``) and refuse further effects and
        requests. Waits up to ``fence_grace``; a worker still running then is reported
        through ``fatal``. Safe to call more than once (later calls wait for the first)."""
        if self._shutdown_task is None:
            loop = asyncio.get_running_loop()
            self._shutdown_task = loop.create_task(self._shutdown())
        await asyncio.shield(self._shutdown_task)

    async def _shutdown(self) -> None:
        self._closed = True
        self._pending.clear()
        runners: list[ActivationRunner] = []
        for slot in self._slots.values():
            if slot.waiter is not None:
                slot.waiter.cancel()
                slot.waiter = None
            slot.backlog.clear()
            if slot.current is not None:
                runners.append(slot.current)
                slot.current.stop(StopCause.SHUTDOWN)
        tasks = {r.task for r in runners if r.task is not None and not r.task.done()}
        if tasks:
            await asyncio.wait(tasks, timeout=self._policy.fence_grace)
        for runner in runners:
            if not runner.finished:
                self._overrun(runner)
