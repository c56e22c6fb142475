"""The model of durable reminders on one simulated node (the product's are
``registry.core.durable`` rules 6–8, ``registry.worker.timers`` rules 2–3 and
``registry.node.checkpoints``).

What it models, as the product does it:

- Some names' workers keep one reminder (``ReminderPlan``, drawn per seed by the
  workload). Such a worker, started without its reminder in ``Activation.reminders``,
  sets it (``ctx.set_reminder``): a ``Remind(op="set")`` with its token, due
  ``first_us`` after now, every ``every_us``. It is scheduled once committed.
- A command is proposed through ``Replica.propose_checkpoint`` and its outcome is read
  from this node's *applied* state (``registry.node.checkpoints.reminder_outcome``, the
  desk's own function): re-sent every ``RESEND_US`` until committed or refused (stale
  token), or ``TIMEOUT_US`` passed. A worker whose set timed out sets it again.
- An activation that starts with reminders schedules each from period ``fired + 1``:
  missed periods at once, oldest first (at most ``MAX_CATCH_UP``), then each period at
  its due time.
- A firing is a message to the worker: it is handled only while the activation runs
  here and was not told to stop, its worker does not block, and the hosts' sub-lease
  holds (the host's lease check); otherwise it is dropped and the schedule moves on —
  it was never acknowledged, so the next holder fires it. A handled firing is
  acknowledged with a ``Remind(op="fired", period)``, fenced by token like the rest.
- The hosts run the schedule, not the control process: a paused control process does
  not stop firings while the sub-lease holds; their commands wait until it runs again.
- Wall clocks: due times are Unix seconds in the product; here every node's wall clock
  reads true time (NTP-perfect). A skew between nodes would move the instants at which
  periods fire, not which periods fire.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.core.commands import Remind
from registry.core.durable import MAX_CATCH_UP, StoredReminder
from registry.core.state import Activation, StartReason
from registry.node.checkpoints import reminder_outcome
from registry.sim.cluster.observations import ReminderFired, period_due_us

if TYPE_CHECKING:
    from registry.core.replica import PeerMessage
    from registry.sim.cluster.runtime import NodeRuntime, _Activation
    from registry.sim.engine.world import World

REMINDER = "beat"
"""The one reminder a planned worker keeps."""
RESEND_US = 1_000_000
"""``registry.node.checkpoints.RESEND_S``."""
TIMEOUT_US = 10_000_000
"""``registry.node.checkpoints.COMMIT_TIMEOUT_S``."""
PAUSED_RETRY_US = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class ReminderPlan:
    """How a name's worker sets its reminder."""

    first_us: int
    """Period 0 is due this long after the worker sets it."""
    every_us: int
    """Between periods (>= ``MIN_REMINDER_PERIOD_S``)."""


@dataclass(slots=True, eq=False)
class _Waiting:
    command: Remind
    deadline_us: int
    done: Callable[[str], None]
    """Called once with ``committed``, ``refused`` or ``timed_out``."""


class NodeReminders:
    """The reminders of one boot of one node (a crash ends it with the runtime)."""

    def __init__(self, runtime: NodeRuntime, plans: dict[str, ReminderPlan]) -> None:
        self._runtime = runtime
        self._plans = plans
        self._waiting: list[_Waiting] = []

    @property
    def _world(self) -> World[PeerMessage]:
        return self._runtime.host.sim.world

    # -- activations -------------------------------------------------------------------

    def started(self, act: _Activation, activation: Activation) -> None:
        """Schedule what ``act`` started with; set the planned reminder if it lacks it."""
        faults = self._runtime.faults
        kept = activation.reminders
        if faults.drop_reminders and activation.reason is StartReason.FAILOVER:
            kept = ()  # the plant: the host start leaves them out
        for reminder in kept:
            self._schedule(act, reminder)
        planned = act.name in self._plans and not act.blocked
        if planned and not any(r.reminder == REMINDER for r in kept):
            # from ``on_start``, once the Ready that started it is done
            self._world.after(1, lambda: self._set(act))

    def ended(self, act: _Activation) -> None:
        if not self._runtime.faults.leak_reminders:  # the plant keeps its timers armed
            act.schedule.clear()

    def _set(self, act: _Activation) -> None:
        if self._runtime.active.get(act.name) is not act or act.stopping:
            return
        plan = self._plans[act.name]
        now = self._world.now_us
        command = Remind(
            name=act.name,
            token=act.shown_token,
            reminder=REMINDER,
            op="set",
            due=(now + plan.first_us) / 1e6,
            every=plan.every_us / 1e6,
        )

        def done(outcome: str) -> None:
            runtime = self._runtime
            if runtime.active.get(act.name) is not act or act.stopping:
                return
            if outcome == "committed":
                self._schedule(
                    act, StoredReminder(reminder=REMINDER, due=command.due, every=command.every)
                )
            elif outcome == "timed_out":
                self._set(act)  # what a worker does with an ``unavailable``: try again

        self._runtime.ledger.reminders["set"] += 1
        self._send(_Waiting(command=command, deadline_us=now + TIMEOUT_US, done=done))

    # -- the schedule (``registry.worker.timers.Schedule``) ----------------------------

    def _schedule(self, act: _Activation, reminder: StoredReminder) -> None:
        act.schedule[reminder.reminder] = reminder
        period = reminder.fired + 1
        now = self._world.now_us
        if reminder.every > 0:
            latest = math.floor((now / 1e6 - reminder.due) / reminder.every)
            period = max(period, latest - MAX_CATCH_UP + 1)
        self._arm(act, reminder, period)

    def _arm(self, act: _Activation, reminder: StoredReminder, period: int) -> None:
        world = self._world
        at = max(world.now_us + 1, period_due_us(reminder.due, reminder.every, period))
        world.at(at, lambda: self._due(act, reminder, period))

    def _due(self, act: _Activation, reminder: StoredReminder, period: int) -> None:
        runtime = self._runtime
        if not runtime.alive or act.schedule.get(reminder.reminder) is not reminder:
            return  # the host died with its node, or the schedule was dropped
        if reminder.every > 0:
            self._arm(act, reminder, period + 1)
        else:
            del act.schedule[reminder.reminder]
        now = self._world.now_us
        running = runtime.active.get(act.name) is act and not act.stopping
        if runtime.faults.leak_reminders:
            running = True  # the leaked timer delivers to a worker object that lives on
        if not running or act.blocked or now >= runtime.sub_lease_until:
            runtime.ledger.reminders["dropped"] += 1
            return
        runtime.ledger.reminders["fired"] += 1
        runtime.ledger.observe(
            ReminderFired(
                at_us=now,
                node=runtime.node,
                name=act.name,
                token=act.shown_token,
                reminder=reminder.reminder,
                due=reminder.due,
                every=reminder.every,
                period=period,
            )
        )
        ack = Remind(
            name=act.name,
            token=act.shown_token,
            reminder=reminder.reminder,
            op="fired",
            period=period,
        )
        self._send(_Waiting(command=ack, deadline_us=now + TIMEOUT_US, done=self._acked))

    def _acked(self, outcome: str) -> None:
        self._runtime.ledger.reminders[f"ack_{outcome}"] += 1

    # -- commits (``registry.node.checkpoints.CheckpointDesk``) -------------------------

    def _outcome(self, command: Remind) -> str:
        view = self._runtime.host.view
        if view is None:
            return ""
        state = view.state
        record = state.registered(command.name)
        if record is None or not record.holder or record.token != command.token:
            return "refused"
        kept = state.reminders_of(command.name)
        return "committed" if reminder_outcome(command, kept, state) is not None else ""

    def _send(self, waiting: _Waiting) -> None:
        runtime, world = self._runtime, self._world
        host = runtime.host
        if not runtime.alive or host.replica is None:
            return
        if world.is_paused(runtime.node):  # the control process is frozen: it sends later
            world.after(PAUSED_RETRY_US, lambda: self._send(waiting))
            return
        if self._resolve(waiting):
            return
        if world.now_us >= waiting.deadline_us:
            if waiting in self._waiting:
                self._waiting.remove(waiting)
            waiting.done("timed_out")
            return
        if waiting not in self._waiting:
            self._waiting.append(waiting)
        host.replica.propose_checkpoint(waiting.command)
        world.after(RESEND_US, lambda: self._resend(waiting))
        host.settle()

    def _resend(self, waiting: _Waiting) -> None:
        if waiting in self._waiting:
            self._send(waiting)

    def _resolve(self, waiting: _Waiting) -> bool:
        outcome = self._outcome(waiting.command)
        if not outcome:
            return False
        if waiting in self._waiting:
            self._waiting.remove(waiting)
        waiting.done(outcome)
        return True

    def on_applied(self) -> None:
        """This node applied entries: settle the commands they decided."""
        for waiting in list(self._waiting):
            self._resolve(waiting)
