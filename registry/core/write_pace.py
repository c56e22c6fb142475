"""Write pacing: a leader admits new client writes only as fast as its slowest leased
member applies them.

Why: a commit needs a majority, not every member, so under a stream of bulk writes the
member that also starts the activations (the slowest applier) fell further and further
behind, and its names started that much later. When a member's lease still counted
only once it had applied the leader's whole log (membership rule 3 before issue 13's
heal work; it now asks only for the last ``MemberDown`` of the member), that lag also
cost it every acknowledgement: it fenced, its host was killed, and the restarts cost
elections (``registry bench --names 100000``: 0 of 100,000 names held for a minute).

Rules
-----
1. The leader records its last log index once per tick (``record``).
2. A member *lags* when its latest heartbeat says it had applied less than the leader's
   last index of ``lag_tick`` ticks ago. Only members heard from within ``lease_tick``
   whose heartbeat says they hold a lease count (a member without a lease has nothing
   to lose, and a dead one must not stop writes); the leader counts itself too.
3. While a member lags, the shell holds new client proposals back (``Driver``) — never
   longer than its own bound, so pacing can slow writes but never stop them. Proposals
   the core makes itself (membership, releases, checkpoints) are never held.
Pacing only delays proposals: it changes no guarantee.
"""

from __future__ import annotations

from collections import deque


class WritePace:
    def __init__(self, *, lag_tick: int) -> None:
        self.lag_tick = max(1, lag_tick)
        self._history: deque[tuple[int, int]] = deque()
        """``(tick, last index)``, oldest first, spanning about ``lag_tick`` ticks."""

    def record(self, tick: int, last_index: int) -> None:
        """Rule 1; ``reset`` when leadership ends (a new leader starts a new history)."""
        history = self._history
        history.append((tick, last_index))
        while len(history) > 1 and history[1][0] <= tick - self.lag_tick:
            history.popleft()

    def reset(self) -> None:
        self._history.clear()

    def due_index(self, tick: int) -> int:
        """The last index the leader had ``lag_tick`` ticks before ``tick`` (0 when it
        has not led that long): every leased member should have applied this far."""
        history = self._history
        if not history or history[0][0] > tick - self.lag_tick:
            return 0
        return history[0][1]

    def lagging(self, tick: int, applied: list[int]) -> bool:
        """Rule 2: does any of these applied indexes lag?"""
        due = self.due_index(tick)
        return due > 0 and any(a < due for a in applied)
