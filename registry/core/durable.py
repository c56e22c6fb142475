"""Durable worker state kept by the replicated registry: checkpoints.

Rules
-----
1. A checkpoint is a ``Checkpoint(name, token, seq, state)`` command in the Raft log, so
   it is on a majority of fsync'd logs before anyone hears it was taken, and every
   replica holds the same checkpoints (snapshots carry them).
2. It is fenced by the activation's token (G2): it is applied only while ``token`` is
   the name's current token and the name has a holder. Any other token is refused as
   stale (``Code.STALE``, reason ``STALE_TOKEN``) and changes nothing, so a checkpoint
   from a superseded activation can never overwrite its successor's state.
3. Within one token, ``seq`` orders an activation's checkpoints: a retried or reordered
   older one (lower or equal ``seq``) is acknowledged and changes nothing.
4. A name keeps only its last checkpoint. Unregistering the name drops it.
5. A FAILOVER or RESTART activation (no handed-off state) starts with the last
   checkpoint, and learns the log index it was taken at (``restored_from``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredCheckpoint:
    """The last checkpoint of one name."""

    index: int
    """The log index of the entry that took it (``ctx.restored_from``)."""
    token: int
    """The token of the activation that took it."""
    seq: int
    """Its order among that activation's checkpoints (rule 3)."""
    state: bytes


class Checkpoints:
    """Name → last checkpoint (pure state; ``RegistryState`` owns one)."""

    def __init__(self) -> None:
        self._by_name: dict[str, StoredCheckpoint] = {}
        self.applied_total = 0
        """Checkpoints applied since this replica started (a metric, not replicated)."""

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, name: str) -> StoredCheckpoint | None:
        return self._by_name.get(name)

    def put(self, index: int, name: str, token: int, seq: int, state: bytes) -> bool:
        """Keep a checkpoint the state machine accepted (rule 2 is checked by the
        caller); False when an equal or newer one of that token is already kept."""
        current = self._by_name.get(name)
        if current is not None and current.token == token and current.seq >= seq:
            return False
        self._by_name[name] = StoredCheckpoint(index=index, token=token, seq=seq, state=state)
        self.applied_total += 1
        return True

    def drop(self, name: str) -> None:
        self._by_name.pop(name, None)

    def to_rows(self) -> list[list[Any]]:
        """For the snapshot: ``[name, index, token, seq, base64 state]``, sorted."""
        return [
            [name, c.index, c.token, c.seq, base64.b64encode(c.state).decode()]
            for name, c in sorted(self._by_name.items())
        ]

    @classmethod
    def from_rows(cls, rows: list[list[Any]]) -> Checkpoints:
        store = cls()
        for name, index, token, seq, state in rows:
            store._by_name[name] = StoredCheckpoint(
                index=index, token=token, seq=seq, state=base64.b64decode(state)
            )
        return store


MIN_REMINDER_PERIOD_S = 0.5
"""The shortest reminder period: every firing costs a log entry (rule 8)."""
MAX_REMINDERS_PER_NAME = 64
"""A name's activation may keep this many reminders."""
MAX_CATCH_UP = 100
"""Missed periods fired after a failover, at most (older ones are skipped)."""


def reminder_problem(due: float, every: float, count: int) -> str | None:
    """Why a reminder cannot be set (``count``: how many the name keeps), or ``None``."""
    if every != 0 and not every >= MIN_REMINDER_PERIOD_S:
        return f"a reminder period must be 0 (once) or >= {MIN_REMINDER_PERIOD_S} s"
    if not due > 0:
        return "a reminder needs a due time (Unix seconds)"
    if count >= MAX_REMINDERS_PER_NAME:
        return f"a name may keep at most {MAX_REMINDERS_PER_NAME} reminders"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredReminder:
    """A durable reminder of one name (rules 6–9)."""

    reminder: str
    due: float
    """Wall-clock time (Unix seconds) of period 0."""
    every: float
    """Seconds between periods; 0 for a one-shot reminder."""
    fired: int = -1
    """The last period whose firing was acknowledged (-1: none)."""

    def due_at(self, period: int) -> float:
        return self.due + period * self.every


class Reminders:
    """Name → its reminders (pure state; ``RegistryState`` owns one).

    6. ``set`` adds or replaces a reminder; ``cancel`` removes it; ``fired`` acknowledges
       period ``k`` after ``handle_reminder`` returned. All are fenced by token as
       checkpoints are (rule 2), and unregistering the name drops its reminders.
    7. The activation that holds the name schedules the reminders it started with: period
       ``fired + 1`` onwards, missed periods first (at most ``MAX_CATCH_UP``). A reminder
       therefore fires at least once per period, after a failover too; a period can fire
       twice only if its holder was lost between firing it and the ``fired`` commit.
    8. A one-shot reminder (``every == 0``) is removed when its firing is acknowledged.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, dict[str, StoredReminder]] = {}
        self.fired_total = 0

    def __bool__(self) -> bool:
        return bool(self._by_name)

    def of(self, name: str) -> tuple[StoredReminder, ...]:
        return tuple(sorted(self._by_name.get(name, {}).values(), key=lambda r: r.reminder))

    def count(self, name: str) -> int:
        return len(self._by_name.get(name, ()))

    def set(self, name: str, reminder: StoredReminder) -> None:
        self._by_name.setdefault(name, {})[reminder.reminder] = reminder

    def cancel(self, name: str, reminder: str) -> None:
        kept = self._by_name.get(name)
        if kept is not None:
            kept.pop(reminder, None)
            if not kept:
                del self._by_name[name]

    def fired(self, name: str, reminder: str, period: int) -> None:
        kept = self._by_name.get(name, {}).get(reminder)
        if kept is None or period <= kept.fired:
            return
        self.fired_total += 1
        if kept.every == 0:
            self.cancel(name, reminder)
        else:
            self._by_name[name][reminder] = StoredReminder(
                reminder=reminder, due=kept.due, every=kept.every, fired=period
            )

    def drop(self, name: str) -> None:
        self._by_name.pop(name, None)

    def to_rows(self) -> list[list[Any]]:
        return [
            [name, r.reminder, r.due, r.every, r.fired]
            for name in sorted(self._by_name)
            for r in self.of(name)
        ]

    @classmethod
    def from_rows(cls, rows: list[list[Any]]) -> Reminders:
        store = cls()
        for name, reminder, due, every, fired in rows:
            store.set(name, StoredReminder(reminder=reminder, due=due, every=every, fired=fired))
        return store
