"""Timers and reminders of one activation: when they fire, as mailbox messages.

Rules
-----
1. A *timer* (``ctx.set_timer``) lives in this process only: it fires ``after`` seconds,
   then every ``every`` seconds if given, until cancelled or until the instance ends
   (a crash or a stop drops every timer). Setting a timer again replaces it.
2. A *reminder* (``ctx.set_reminder``) is committed to the log first
   (``registry.core.durable`` rules 6–8), then scheduled here. The activation that
   starts with reminders schedules each from period ``fired + 1``: missed periods fire
   at once, oldest first (at most ``MAX_CATCH_UP``), then each period at its due time.
3. A firing is a message in the activation's mailbox, so hooks still run one at a time;
   a reminder's firing is acknowledged (``fired``) only after ``handle_reminder``
   returned, so a period whose holder died first fires again on the next holder. A
   firing that finds no sub-lease never runs its hook: a timer's is dropped, a
   reminder's is tried again until the lease is back or the instance is stopped.
4. Due times of reminders are wall-clock (Unix) seconds: they must mean the same on
   every node. Timers use the event loop's monotonic clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from registry.core.durable import MAX_CATCH_UP, StoredReminder, reminder_problem
from registry.core.state import validate_identifier

RemindOp = Callable[[str, str, float, float, int], Awaitable[int]]
"""Commits a ``Remind`` (reminder, op, due, every, period) for this activation."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tick:
    """A timer or reminder firing, queued in the mailbox."""

    name: str
    reminder: bool
    fired_at: float
    """Reminders: the wall-clock time this period was due; timers: when it fired."""
    period: int = 0


class Schedule:
    """The timers and reminders of one activation (module rules)."""

    def __init__(self, deliver: Callable[[Tick], None], remind: RemindOp | None = None) -> None:
        self._deliver = deliver
        self._remind = remind
        self._next: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._reminders: dict[str, StoredReminder] = {}
        self._reminder_handles: dict[str, asyncio.TimerHandle] = {}

    # -- timers (rule 1) ---------------------------------------------------------------

    def set_timer(self, name: str, after: float, every: float | None) -> None:
        if after < 0 or (every is not None and every <= 0):
            raise ValueError(f"timer {name!r}: after must be >= 0 and every > 0")
        self.cancel_timer(name)
        loop = asyncio.get_running_loop()
        self._timers[name] = loop.call_later(after, self._timer_due, name, every)

    def _timer_due(self, name: str, every: float | None) -> None:
        if every is None:
            self._timers.pop(name, None)
        else:
            loop = asyncio.get_running_loop()
            self._timers[name] = loop.call_later(every, self._timer_due, name, every)
        self._deliver(Tick(name=name, reminder=False, fired_at=time.time()))

    def cancel_timer(self, name: str) -> bool:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()
        return handle is not None

    def timers(self) -> list[str]:
        return sorted(self._timers)

    def drop_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    # -- reminders (rule 2) ------------------------------------------------------------

    def start_reminder(self, reminder: StoredReminder) -> None:
        """Schedule ``reminder`` from its first unacknowledged period."""
        self.drop_reminder(reminder.reminder)
        self._reminders[reminder.reminder] = reminder
        period = reminder.fired + 1
        if reminder.every > 0:
            now = time.time()
            latest = math.floor((now - reminder.due) / reminder.every)
            period = max(period, latest - MAX_CATCH_UP + 1)
        self._arm(reminder, period)

    def _arm(self, reminder: StoredReminder, period: int) -> None:
        self._next[reminder.reminder] = reminder.due_at(period)
        delay = max(0.0, reminder.due_at(period) - time.time())
        loop = asyncio.get_running_loop()
        handle = loop.call_later(delay, self._reminder_due, reminder, period)
        self._reminder_handles[reminder.reminder] = handle

    def _reminder_due(self, reminder: StoredReminder, period: int) -> None:
        if reminder.every > 0:
            self._arm(reminder, period + 1)
        else:
            self._reminder_handles.pop(reminder.reminder, None)
            self._reminders.pop(reminder.reminder, None)
            self._next.pop(reminder.reminder, None)
        tick = Tick(
            name=reminder.reminder,
            reminder=True,
            fired_at=reminder.due_at(period),
            period=period,
        )
        self._deliver(tick)

    def drop_reminder(self, name: str) -> None:
        handle = self._reminder_handles.pop(name, None)
        if handle is not None:
            handle.cancel()
        self._reminders.pop(name, None)
        self._next.pop(name, None)

    def reminders(self) -> dict[str, tuple[float, float]]:
        """``name → (next due, every)`` (``ScheduleOps``)."""
        return {n: (self._next[n], self._reminders[n].every) for n in sorted(self._reminders)}

    # -- ScheduleOps: committed first (rule 2) -----------------------------------------

    async def set_reminder(self, name: str, due: float, every: float) -> None:
        problem = validate_identifier("reminder", name) or reminder_problem(
            due, every, len(self._reminders) - (name in self._reminders)
        )
        if problem:
            raise ValueError(problem)
        await self._commit(name, "set", due, every, 0)
        self.start_reminder(StoredReminder(reminder=name, due=due, every=every))

    async def cancel_reminder(self, name: str) -> None:
        await self._commit(name, "cancel", 0.0, 0.0, 0)
        self.drop_reminder(name)

    async def acknowledge(self, tick: Tick) -> None:
        """``handle_reminder`` returned for ``tick`` (rule 3)."""
        await self._commit(tick.name, "fired", 0.0, 0.0, tick.period)

    async def _commit(self, name: str, op: str, due: float, every: float, period: int) -> None:
        if self._remind is None:
            raise RuntimeError("reminders need a node: this runtime has no reminder store")
        await self._remind(name, op, due, every, period)

    def close(self) -> None:
        self.drop_timers()
        for handle in self._reminder_handles.values():
            handle.cancel()
        self._reminder_handles.clear()
