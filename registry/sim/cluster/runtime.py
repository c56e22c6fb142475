"""The model worker runtime of one simulated node: a control process and worker hosts.

What it models (the real one is ``registry.node.hosts`` + ``registry.worker``): the node's
*control process* runs the core and owns the member lease; every activation runs in a
*worker host* under a sub-lease that the control process renews while the lease holds.

- ``Start``: a host starts the activation now (true time). Every worker is a *counter*:
  it starts from the count in its handed-over state (a HANDOFF start) or from zero.
- ``Stop``: a well-behaved host runs ``on_stop`` now and the activation ends. A host that
  *ignores stop* (its worker blocks the loop; drawn per activation, ``ignore_stop``)
  keeps running until the control process SIGKILLs it ``fence_grace`` after the stop.
- The host's *watchdog*: a host whose sub-lease was not renewed exits ``fence_grace``
  after the sub-lease ended, whatever the control process does (it may be paused: a
  SIGSTOP of the control process does not freeze its hosts).
- ``BeginHandoff``: after a small random delay the worker answers ``Resume(count)`` — or
  ``Restart()`` in some seeds — and the host stops it; the runtime reports
  ``handoff_done``. In some seeds the answer comes only after the deadline; then the
  runtime stops it at ``deadline_tick`` and reports it without state, and the late answer
  is ignored. A blocked worker never answers: stopped at the deadline, killed after
  ``fence_grace``, then reported without state.
- A crash of the node ends every activation at the crash instant (hosts die with their
  parent).
- Every end is reported to the core (``stopped``) by the control process, as the real
  supervisor does: when the worker returned, or its host was killed or exited; a ``Stop``
  of something that is not running, at once.

- Durable reminders: ``registry.sim.cluster.reminders`` (set, schedule, fire, acknowledge).
- ``checkpoint(name)`` (the workload asks a running worker to take one): the worker's
  count is proposed as a ``Checkpoint`` with its token and a fresh ``seq``, as
  ``registry.node.checkpoints`` does: through ``Replica.propose_checkpoint``, the outcome
  read from this node's *applied* state, sent again every ``CHECKPOINT_RESEND_US`` until
  it is committed or refused or ``CHECKPOINT_TIMEOUT_US`` passed. A resend from a node
  that was cut off or paused is how a stale checkpoint reaches the log (it must be
  refused there). The worker never waits for it (the model has no ``await``).

G1 is judged from these events alone: an activation is live from its start until its stop
actually ran, its host was killed or exited, or its node crashed — not from lease
possession, so a core or shell that forgets to stop a worker is seen.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from registry.core.commands import Checkpoint
from registry.core.durable import StoredReminder
from registry.core.replica import BeginHandoff, Effect, Start, Stop
from registry.core.state import StartReason
from registry.sim.cluster.observations import (
    ActivationEnded,
    ActivationStarted,
    ClusterObservation,
)
from registry.sim.cluster.reminders import NodeReminders
from registry.sim.faults import NO_FAULTS, SimFaults

if TYPE_CHECKING:
    from registry.sim.cluster.harness import ClusterHost

PAUSED_RETRY_US = 10_000
CHECKPOINT_RESEND_US = 1_000_000
"""``registry.node.checkpoints.RESEND_S``."""
CHECKPOINT_TIMEOUT_US = 10_000_000
"""``registry.node.checkpoints.COMMIT_TIMEOUT_S``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffBehaviour:
    """How workers behave (drawn per seed)."""

    delay_us: tuple[int, int] = (1_000, 300_000)
    """Uniform ``begin_handoff`` answer delay, true microseconds. Default 1–300 ms."""
    late: float = 0.0
    """Probability that an answer comes only after the deadline. Default 0."""
    restart: float = 0.0
    """Probability that a worker answers ``Restart()`` (no state). Default 0."""
    ignore_stop: float = 0.0
    """Probability that an activation's worker blocks: it ignores stop and never answers
    ``begin_handoff``, so only a SIGKILL or its host's watchdog ends it. Default 0."""


class Ledger:
    """Cluster-wide: start counts and the observations of activations."""

    def __init__(self, now: Callable[[], int], observe: Callable[[ClusterObservation], None]):
        self._now = now
        self._observe = observe
        self.starts: dict[str, int] = {reason.value: 0 for reason in StartReason}
        self.late_answers = 0
        """``begin_handoff`` answers drawn to come after the deadline."""
        self.kills = 0
        """Hosts SIGKILLed by their control process (a stop ignored for fence_grace)."""
        self.watchdog_exits = 0
        """Activations ended by their host's watchdog (sub-lease + fence_grace)."""
        self.checkpoints: dict[str, int] = {
            "taken": 0,
            "sent": 0,
            "committed": 0,
            "refused": 0,
            "timed_out": 0,
        }
        """Checkpoints by what their node's desk saw (``sent`` counts resends too)."""
        self.reminders: dict[str, int] = {
            "set": 0,
            "fired": 0,
            "dropped": 0,
            "ack_committed": 0,
            "ack_refused": 0,
            "ack_timed_out": 0,
        }
        """Reminder sets asked, firings handled or dropped, and how their acks ended."""

    def observe(self, obs: ClusterObservation) -> None:
        self._observe(obs)

    def started(self, obs: ActivationStarted) -> None:
        self.starts[obs.reason] += 1
        self._observe(obs)

    def ended(self, node: str, act: _Activation, why: str, end_us: int) -> None:
        self._observe(
            ActivationEnded(
                at_us=end_us,
                node=node,
                name=act.name,
                token=act.shown_token,
                reason=act.reason,
                why=why,
                start_us=act.start_us,
                final=act.count,
            )
        )


@dataclass(slots=True)
class _Activation:
    name: str
    token: int
    reason: str
    start_us: int
    count: int
    shown_token: int = 0
    """The token the worker was given (differs from ``token`` only under ``reuse_token``)."""
    blocked: bool = False
    """Its worker ignores stop."""
    stopping: bool = False
    """Stop was sent; the control process no longer dispatches to it."""
    stop_why: str = ""
    handoff: BeginHandoff | None = None
    schedule: dict[str, StoredReminder] = field(default_factory=dict)
    """Its armed reminders (``registry.sim.cluster.reminders``)."""


def encode_count(count: int) -> bytes:
    return str(count).encode()


def decode_count(state: bytes | None) -> int:
    return int(state.decode()) if state else 0


class NodeRuntime:
    """One boot of one node's control process and its hosts (a crash ends it)."""

    def __init__(
        self,
        host: ClusterHost,
        ledger: Ledger,
        behaviour: HandoffBehaviour,
        rng: random.Random,
        faults: SimFaults = NO_FAULTS,
    ) -> None:
        self._host = host
        self._ledger = ledger
        self._behaviour = behaviour
        self._rng = rng
        self._faults = faults
        self.active: dict[str, _Activation] = {}
        self._after_kill: dict[str, Start] = {}
        """Starts waiting for a predecessor here that ignores stop to be killed."""
        self._delayed: dict[str, Start] = {}
        """``failover_delay`` plant: starts not yet run."""
        self.sub_lease_until = 0
        """True time until which the hosts' sub-lease runs (the control process renews it
        while it holds the member lease)."""
        self._watchdog_at: int | None = None
        self._last_seq = 0
        self.alive = True
        self.reminders = NodeReminders(self, host.sim.reminder_plans)

    @property
    def node(self) -> str:
        return self._host.id

    @property
    def host(self) -> ClusterHost:
        return self._host

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @property
    def faults(self) -> SimFaults:
        return self._faults

    def _now(self) -> int:
        return self._host.sim.world.now_us

    def _grace_us(self) -> int:
        """``fence_grace`` in true time on this node's clock."""
        sim = self._host.sim
        return sim.member_config.fence_grace_tick * sim.world.clock(self.node).period_us

    # -- effects -----------------------------------------------------------------------

    def run(self, effect: Effect) -> None:
        if isinstance(effect, Start):
            name = effect.activation.name
            old = self.active.get(name)
            if old is not None and old.stopping:
                # Its predecessor here ignores stop: the control process starts the new one
                # only once the old host is gone (it is killed within fence_grace).
                self._after_kill[name] = effect
                return
            if old is not None or name in self._delayed:
                raise AssertionError(
                    f"{self.node}: Start of {name!r}@{effect.activation.token} while it runs"
                )
            delay = self._faults.failover_delay_us
            if delay and effect.activation.reason is StartReason.FAILOVER:
                self._delayed[name] = effect
                self._host.sim.world.after(delay, lambda: self._delayed_start(effect))
                return
            self._start(effect)
        elif isinstance(effect, Stop):
            if self._delayed.get(effect.name) is not None:
                del self._delayed[effect.name]
                self._report_stopped(effect.name, effect.token)
                return
            queued = self._after_kill.get(effect.name)
            if queued is not None and queued.activation.token == effect.token:
                del self._after_kill[effect.name]
                self._report_stopped(effect.name, effect.token)
                return
            running = self.active.get(effect.name)
            if running is not None and running.token == effect.token:
                self._stop(running, effect.reason.value)  # ``end`` reports it
            else:
                self._report_stopped(effect.name, effect.token)
        else:
            self._begin_handoff(effect)

    def _delayed_start(self, effect: Start) -> None:
        name = effect.activation.name
        if self.alive and self._delayed.get(name) is effect:
            del self._delayed[name]
            self._start(effect)

    def _start(self, effect: Start) -> None:
        act = effect.activation
        now = self._now()
        initial = decode_count(act.state)
        shown = act.token
        if self._faults.reuse_token:
            shown = self._host.last_token.get(act.name, act.token)
        self._host.last_token[act.name] = act.token
        blocked = bool(self._behaviour.ignore_stop) and (
            self._rng.random() < self._behaviour.ignore_stop
        )
        self.active[act.name] = _Activation(
            name=act.name,
            token=act.token,
            reason=act.reason.value,
            start_us=now,
            count=initial,
            shown_token=shown,
            blocked=blocked,
        )
        self._host.sim.world.record("start", self.node, act.name, act.token)
        self._ledger.started(
            ActivationStarted(
                at_us=now,
                node=self.node,
                name=act.name,
                token=shown,
                reason=act.reason.value,
                initial=initial,
                restored_from=act.restored_from,
                blocked=blocked,
            )
        )
        self.reminders.started(self.active[act.name], act)

    def _stop(self, act: _Activation, why: str) -> None:
        """Send stop to the activation's host: it runs ``on_stop`` now, or — blocked —
        is SIGKILLed ``fence_grace`` later."""
        if not act.blocked:
            self.end(act.name, why)
            return
        if act.stopping:
            return
        act.stopping = True
        act.stop_why = why
        if not self._faults.no_kill:
            self._host.sim.world.after(self._grace_us(), lambda: self._kill(act))

    def _kill(self, act: _Activation) -> None:
        if not self.alive or self.active.get(act.name) is not act:
            return
        if self._host.sim.world.is_paused(self.node):  # the control process is frozen
            self._host.sim.world.after(PAUSED_RETRY_US, lambda: self._kill(act))
            return
        self._ledger.kills += 1
        self.end(act.name, f"killed after stop ({act.stop_why})")
        if act.handoff is not None:
            self._host.handoff_done(act.name, act.handoff.token, None)

    def _begin_handoff(self, request: BeginHandoff) -> None:
        if self._delayed.pop(request.name, None) is not None:  # never ran: nothing to hand
            self._host.sim.world.after(
                1, lambda: self._report_handoff(request.name, request.token, None)
            )
            return
        act = self.active.get(request.name)
        if act is None or act.token != request.token:
            return
        act.handoff = request
        if act.blocked:
            return  # a blocked worker never answers: the deadline stops it
        behaviour, rng = self._behaviour, self._rng
        if behaviour.late and rng.random() < behaviour.late:
            self._ledger.late_answers += 1
            period = self._host.sim.world.clock(self.node).period_us
            ticks = request.deadline_tick - self._host.ticks() + 5
            delay = max(1, ticks) * period
        else:
            delay = rng.randint(*behaviour.delay_us)
        restart = bool(behaviour.restart) and rng.random() < behaviour.restart
        self._host.sim.world.after(delay, lambda: self._answer(request, restart))

    def _answer(self, request: BeginHandoff, restart: bool) -> None:
        """The worker's ``begin_handoff`` returned ``Resume(count)`` or ``Restart()``."""
        if not self.alive:
            return
        world = self._host.sim.world
        if world.is_paused(self.node):
            world.after(PAUSED_RETRY_US, lambda: self._answer(request, restart))
            return
        act = self.active.get(request.name)
        if act is None or act.handoff is not request:
            return  # stopped meanwhile (fenced, unregistered, or past the deadline)
        state = None if restart or self._faults.drop_handoff else encode_count(act.count)
        self.end(request.name, "handoff-restart" if restart else "handoff")
        self._host.handoff_done(request.name, request.token, state)

    def _report_handoff(self, name: str, token: int, state: bytes | None) -> None:
        if not self.alive:
            return
        if self._host.sim.world.is_paused(self.node):
            self._host.sim.world.after(
                PAUSED_RETRY_US, lambda: self._report_handoff(name, token, state)
            )
            return
        self._host.handoff_done(name, token, state)

    def _report_stopped(self, name: str, token: int) -> None:
        """Tell the core, from the control process's loop (never inside the Ready that
        asked for the stop), that ``(name, token)`` runs no more."""
        world = self._host.sim.world

        def report() -> None:
            if not self.alive:
                return
            if world.is_paused(self.node):
                world.after(PAUSED_RETRY_US, report)
                return
            self._host.stopped(name, token)

        world.after(1, report)

    def check_deadlines(self, ticks: int) -> None:
        """Stop activations whose ``begin_handoff`` is past its deadline; release them
        without state (a blocked one only once it has been killed)."""
        for name, act in sorted(self.active.items()):
            request = act.handoff
            if self.active.get(name) is not act or request is None or act.stopping:
                continue  # stopped by an earlier iteration's effects, or no handoff
            if ticks >= request.deadline_tick:
                if act.blocked:
                    self._stop(act, "handoff-deadline")
                    continue
                self.end(name, "handoff-deadline")
                self._host.handoff_done(name, request.token, None)

    def end(self, name: str, why: str) -> None:
        act = self.active.pop(name)
        self.reminders.ended(act)
        self._host.sim.world.record("end", self.node, name, act.token, why)
        self._ledger.ended(self.node, act, why, self._now())
        self._report_stopped(name, act.token)
        if name in self._after_kill:
            self._start_queued(name)

    def _start_queued(self, name: str) -> None:
        """The predecessor is gone: the control process runs the waiting start (once it
        is not frozen itself; a Stop meanwhile cancels it)."""
        world = self._host.sim.world
        effect = self._after_kill.get(name)
        if effect is None or not self.alive:
            return
        if world.is_paused(self.node):
            world.after(PAUSED_RETRY_US, lambda: self._start_queued(name))
            return
        del self._after_kill[name]
        self.run(effect)

    def crash(self) -> None:
        self._delayed.clear()
        self._after_kill.clear()
        for name in sorted(self.active):
            self.end(name, "crash")
        self.alive = False

    # -- the sub-lease and the hosts' watchdog -----------------------------------------

    def note_lease(self, until_us: int) -> None:
        """The control process holds the member lease until ``until_us`` (true time) and
        renews the hosts' sub-lease to match."""
        if until_us <= self.sub_lease_until:
            return
        self.sub_lease_until = until_us
        if self._faults.no_kill or self._watchdog_at is not None:
            return
        self._arm_watchdog()

    def _arm_watchdog(self) -> None:
        at = self.sub_lease_until + self._grace_us()
        self._watchdog_at = at
        self._host.sim.world.at(at, self._watchdog)

    def _watchdog(self) -> None:
        """Hosts exit once their sub-lease plus ``fence_grace`` is over."""
        self._watchdog_at = None
        if not self.alive:
            return
        if self.sub_lease_until + self._grace_us() > self._now():
            self._arm_watchdog()  # renewed meanwhile
            return
        for name, act in sorted(self.active.items()):
            self._ledger.watchdog_exits += 1
            self.end(name, "watchdog")
            if act.handoff is not None:
                self._report_handoff(name, act.handoff.token, None)

    # -- calls -------------------------------------------------------------------------

    def call(self, name: str) -> int | None:
        """A client's ``incr`` reaches this node: the new count, or ``None`` when the
        control process would refuse (not running here, stopping, paused, or no lease)."""
        act = self.active.get(name)
        if act is None or act.stopping or not self.alive:
            return None
        if self._host.sim.world.is_paused(self.node) or not self._host.has_lease():
            return None
        act.count += 1
        return act.count

    # -- checkpoints -------------------------------------------------------------------

    def checkpoint(self, name: str) -> bool:
        """The worker of ``name`` here takes a checkpoint of its count (False: it does
        not run here, or cannot act now)."""
        act = self.active.get(name)
        if act is None or act.stopping or not self.alive:
            return False
        now = self._now()
        if self._host.sim.world.is_paused(self.node):
            return False
        self._last_seq = max(self._last_seq + 1, now)  # larger than every earlier one
        command = Checkpoint(
            name=name, token=act.shown_token, seq=self._last_seq, state=encode_count(act.count)
        )
        self._ledger.checkpoints["taken"] += 1
        self._send_checkpoint(command, now + CHECKPOINT_TIMEOUT_US)
        return True

    def _checkpoint_outcome(self, command: Checkpoint) -> str:
        """``committed``, ``refused`` or ``""`` (not known yet), from the applied state."""
        view = self._host.view
        if view is None:
            return ""
        state = view.state
        kept = state.checkpoint_of(command.name)
        if kept is not None and kept.token == command.token and kept.seq >= command.seq:
            return "committed"
        record = state.registered(command.name)
        if record is None or not record.holder or record.token != command.token:
            return "refused"
        return ""

    def _send_checkpoint(self, command: Checkpoint, deadline_us: int) -> None:
        world, host = self._host.sim.world, self._host
        if not self.alive or host.replica is None:
            return
        if world.is_paused(self.node):  # the control process is frozen: it sends later
            world.after(PAUSED_RETRY_US, lambda: self._send_checkpoint(command, deadline_us))
            return
        outcome = self._checkpoint_outcome(command)
        if outcome:
            self._ledger.checkpoints[outcome] += 1
            return
        if self._now() >= deadline_us:
            self._ledger.checkpoints["timed_out"] += 1
            return
        self._ledger.checkpoints["sent"] += 1
        host.replica.propose_checkpoint(command)
        host.settle()
        world.after(CHECKPOINT_RESEND_US, lambda: self._send_checkpoint(command, deadline_us))
