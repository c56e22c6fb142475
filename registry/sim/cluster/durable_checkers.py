"""The checkpoint and reminder checkers (durable workers, ``registry.core.durable``), on a
cluster history. The reminder rules (R1–R4) are in ``Reminders``' docstring.

Rules it judges, from observations alone:

1. **Order** (G2 for state): per name, the checkpoints the state machine kept, in log
   order, never go back to an older token — a checkpoint from a superseded activation
   applied after one of its successor's would overwrite newer state with older. (An
   accepted checkpoint whose ``seq`` is not above the kept one of its token is a resend
   and changes nothing: ``registry.core.durable`` rule 3.)
2. **Restore**: a FAILOVER or RESTART start of ``(name, token T)`` resumes the last
   checkpoint committed before its assignment — the kept checkpoint of that name with the
   highest index below ``T`` (a token is the index of the entry that assigned it) and
   above the name's last registration (an unregister drops checkpoints; registering
   again starts empty). ``restored_from`` must be its index and the count its count;
   with no such checkpoint, ``restored_from`` is 0 and the count 0.

Every replica applies the same entries, so each checkpoint is observed once, at the
first replica that applies it; the starting node applied every entry below ``T`` before
it started, so those are all observed before the start.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left, insort
from dataclasses import dataclass, field

from registry.core.durable import MAX_CATCH_UP
from registry.sim.checks.base import Checker
from registry.sim.checks.phases import RunEnded
from registry.sim.cluster.observations import (
    ActivationEnded,
    ActivationStarted,
    Assigned,
    CheckpointApplied,
    ClusterObservation,
    RegisterApplied,
    ReminderApplied,
    ReminderFired,
    period_due_us,
)

RESTORING = ("failover", "restart")


class Checkpoints(Checker[ClusterObservation]):
    name = "checkpoints"
    handles = (CheckpointApplied, RegisterApplied, ActivationStarted)

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[str, list[tuple[int, int, int, int]]] = {}
        """name → (index, token, seq, count) of the checkpoints kept, sorted by index."""
        self.registered_at: dict[str, list[int]] = {}
        """name → indices of its registrations, ascending."""
        self.applied = 0
        """Checkpoints kept (accepted, and not a resend of one kept)."""
        self.refused = 0
        self.restores = 0
        """FAILOVER/RESTART starts that resumed a checkpoint (judged by rule 2)."""

    def feed(self, obs: ClusterObservation) -> None:
        if isinstance(obs, CheckpointApplied):
            self._applied(obs)
        elif isinstance(obs, RegisterApplied):
            for name in obs.names:
                insort(self.registered_at.setdefault(name, []), obs.index)
        else:
            assert isinstance(obs, ActivationStarted)
            if obs.reason in RESTORING:
                self._restored(obs)

    def _applied(self, obs: CheckpointApplied) -> None:
        if not obs.accepted:
            self.refused += 1
            return
        kept = self.kept.setdefault(obs.name, [])
        at = bisect_left(kept, (obs.index,))
        before = kept[at - 1] if at > 0 else None
        after = kept[at] if at < len(kept) else None
        if before is not None and before[1] == obs.token and before[2] >= obs.seq:
            return  # a resend, or reordered within its activation: not kept (rule 3)
        self.applied += 1
        if before is not None and before[1] > obs.token:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r}: a checkpoint of token {obs.token} (count {obs.count}) was "
                f"applied at index {obs.index}, after one of the newer token {before[1]} at "
                f"index {before[0]}: stale state overwrote its successor's",
            )
        elif after is not None and after[1] < obs.token:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r}: a checkpoint of the older token {after[1]} is kept at index "
                f"{after[0]}, after token {obs.token}'s at index {obs.index}",
            )
        kept.insert(at, (obs.index, obs.token, obs.seq, obs.count))

    def _restored(self, obs: ActivationStarted) -> None:
        regs = self.registered_at.get(obs.name, [])
        at = bisect_left(regs, obs.token)
        registered = regs[at - 1] if at > 0 else 0
        kept = self.kept.get(obs.name, [])
        below = bisect_left(kept, (obs.token,))
        latest = kept[below - 1] if below > 0 and kept[below - 1][0] > registered else None
        if latest is None:
            if obs.restored_from or obs.initial:
                self.violation(
                    obs.at_us,
                    obs.node,
                    f"{obs.name!r} started ({obs.reason}, token {obs.token}) at count "
                    f"{obs.initial}, restored from index {obs.restored_from}, but no "
                    f"checkpoint was committed since its registration at index {registered}",
                )
            return
        index, token, _, count = latest
        if (obs.restored_from, obs.initial) != (index, count):
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} started ({obs.reason}, token {obs.token}) at count "
                f"{obs.initial}, restored from index {obs.restored_from}; the last checkpoint "
                f"committed before it is index {index} (token {token}, count {count})",
            )
            return
        self.restores += 1


EPSILON_US = 1_000
"""How soon after its start an activation fires the periods it owes: the catch-up is
the first thing its schedule does (``registry.worker.timers`` rule 2)."""
END_SLACK_US = 100_000
"""Periods due this close to the end of the run are not judged by rule R2."""
MAX_PERIODS = 10_000
"""Bound on the periods one judgement walks (a run is minutes; periods are >= 0.5 s)."""

PeriodKey = tuple[str, str, int]
"""``(name, reminder, due µs)``: a period as its user sees it (``fired_at``)."""
ActKey = tuple[str, str, int]
"""``(node, name, token)``: one activation."""


@dataclass(slots=True, eq=False)
class _Generation:
    """One committed ``set`` of a reminder, until the next set, a cancel or the name's
    next registration (an unregister dropped it) ends it."""

    reminder: str
    index: int
    token: int
    due: float
    every: float
    end: int | None = None
    acks: list[tuple[int, int]] = field(default_factory=list)
    """``(index, period)`` of its accepted ``fired`` entries, in log order."""

    def live_at(self, index: int) -> bool:
        return self.index < index and (self.end is None or self.end > index)

    def fired_before(self, index: int) -> int:
        """The last period acknowledged by an entry below ``index`` (-1: none)."""
        return max((p for i, p in self.acks if i < index), default=-1)

    def key(self, name: str, period: int) -> PeriodKey:
        return (name, self.reminder, period_due_us(self.due, self.every, period))

    def latest(self, at_us: int) -> int:
        """The last period due at or before ``at_us`` (-1: none yet)."""
        if self.every <= 0:
            return 0 if period_due_us(self.due, 0.0, 0) <= at_us else -1
        return math.floor((at_us / 1e6 - self.due) / self.every)


class Reminders(Checker[ClusterObservation]):
    """Durable reminders (``registry.core.durable`` rules 6–8), from observations alone.

    R1. **At least once, no later than the next holder.** An activation that starts with
        a live reminder in its committed state (set below its token, not ended by then)
        owes every period due by its start that no entry below its token acknowledged,
        within ``MAX_CATCH_UP``: each must have fired (anywhere) within ``EPSILON_US`` of
        that start, unless the activation ended first (the next holder owes it then). A
        period a lost holder missed is therefore late by at most the gap until the name
        runs again, which the failover checker bounds (G4).
    R2. **Nothing skipped while running.** An activation still running at the end of the
        run owes every period of its live reminders due after its start (after its own
        set) and ``END_SLACK_US`` before the end: each must have fired.
    R3. **No stale firing.** Only the current activation fires: not one that has ended,
        nor one whose name the log already gave a newer token.
    R4. **Duplicates are bounded.** One activation fires a period at most once, and a
        period fires again only in an activation assigned before that period's ``fired``
        was committed (the entry's index is below the activation's token) — a holder
        lost between firing and acknowledging. So each duplicate needs a change of
        holder inside that window; they are counted (``duplicates``, ``max_firings``).
    """

    name = "reminders"
    handles = (
        ReminderApplied,
        ReminderFired,
        RegisterApplied,
        ActivationStarted,
        ActivationEnded,
        Assigned,
        RunEnded,
    )

    def __init__(self) -> None:
        super().__init__()
        self.generations: dict[str, dict[str, list[_Generation]]] = {}
        """name → reminder → its generations, in log order."""
        self.firings: dict[PeriodKey, list[tuple[int, int]]] = {}
        """period → ``(token, at_us)`` of each firing."""
        self.newest_token: dict[str, int] = {}
        self.ended: dict[ActKey, int] = {}
        self.starts: dict[ActKey, ActivationStarted] = {}
        self._owed: list[tuple[int, int, ActivationStarted]] = []
        """Heap of starts to judge by R1: ``(deadline, seq, start)``."""
        self._seq = 0
        self.fired = 0
        self.duplicates = 0
        self.max_firings = 0
        """The most firings of any one period."""
        self.owed_at_start = 0
        """R1 obligations judged (periods a start had to catch up)."""
        self.late_us: list[int] = []
        """R1: first firing minus due time, of each period a start had to catch up."""
        self.judged_running = 0
        """R2: periods judged for activations running at the end."""

    def feed(self, obs: ClusterObservation) -> None:
        self._expire(obs.at_us)
        if isinstance(obs, ReminderApplied):
            self._applied(obs)
        elif isinstance(obs, ReminderFired):
            self._fired(obs)
        elif isinstance(obs, RegisterApplied):
            for name in obs.names:
                for gens in self.generations.get(name, {}).values():
                    if gens[-1].end is None:
                        gens[-1].end = obs.index
        elif isinstance(obs, Assigned):
            self._newer(obs.name, obs.token)
        elif isinstance(obs, ActivationStarted):
            self._started(obs)
        elif isinstance(obs, ActivationEnded):
            self._ended(obs)
        else:
            assert isinstance(obs, RunEnded)
            self._expire(None)

    def _newer(self, name: str, token: int) -> None:
        self.newest_token[name] = max(self.newest_token.get(name, 0), token)

    def _applied(self, obs: ReminderApplied) -> None:
        if not obs.accepted:
            return
        gens = self.generations.setdefault(obs.name, {}).setdefault(obs.reminder, [])
        current = gens[-1] if gens and gens[-1].end is None else None
        if obs.op == "fired":
            if current is not None:
                current.acks.append((obs.index, obs.period))
            return
        if current is not None:
            current.end = obs.index
        if obs.op == "set":
            gens.append(
                _Generation(
                    reminder=obs.reminder,
                    index=obs.index,
                    token=obs.token,
                    due=obs.due,
                    every=obs.every,
                )
            )

    def _known(self, name: str, token: int) -> tuple[_Generation, ...]:
        """The live reminders an activation of ``name`` with ``token`` started with."""
        return tuple(
            g
            for _, gens in sorted(self.generations.get(name, {}).items())
            for g in gens
            if g.live_at(token)
        )

    def _started(self, obs: ActivationStarted) -> None:
        self._newer(obs.name, obs.token)
        act = (obs.node, obs.name, obs.token)
        self.ended.pop(act, None)
        self.starts[act] = obs
        if not obs.blocked:  # a worker that blocks its loop handles nothing
            # Judged once the deadline passed: by then every entry up to its token is
            # observed (its own registration is reported after the start it caused).
            self._seq += 1
            heapq.heappush(self._owed, (obs.at_us + EPSILON_US, self._seq, obs))

    def _expire(self, now_us: int | None) -> None:
        """Judge R1 for the starts whose deadline passed before ``now_us`` (all: None)."""
        while self._owed and (now_us is None or self._owed[0][0] < now_us):
            deadline, _, start = heapq.heappop(self._owed)
            act = (start.node, start.name, start.token)
            if self.ended.get(act, deadline + 1) <= deadline:
                continue  # it ended before it could: its successor owes the periods
            for gen in self._known(start.name, start.token):
                latest = gen.latest(start.at_us)
                first = max(gen.fired_before(start.token) + 1, latest - MAX_CATCH_UP + 1)
                for period in range(first, min(latest, first + MAX_PERIODS) + 1):
                    self._judge_owed(start, gen.key(start.name, period), deadline)

    def _judge_owed(self, start: ActivationStarted, key: PeriodKey, deadline: int) -> None:
        self.owed_at_start += 1
        name, reminder, due_us = key
        first = min((at for _, at in self.firings.get(key, ())), default=None)
        if first is not None and first <= deadline:
            self.late_us.append(max(0, first - due_us))
            return
        self.violation(
            deadline,
            start.node,
            f"{name!r} (token {start.token}) started with reminder {reminder!r} and did not "
            f"fire its period due at t={due_us / 1e6:.6f}s, missed and not acknowledged",
        )

    def _fired(self, obs: ReminderFired) -> None:
        self.fired += 1
        act = (obs.node, obs.name, obs.token)
        if act in self.ended:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} (token {obs.token}) fired {obs.reminder!r} period "
                f"{obs.period} after that activation ended",
            )
        newest = self.newest_token.get(obs.name, 0)
        if newest > obs.token:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} fired {obs.reminder!r} period {obs.period} with stale token "
                f"{obs.token}: the log already gave the name token {newest}",
            )
        key = (obs.name, obs.reminder, period_due_us(obs.due, obs.every, obs.period))
        earlier = self.firings.setdefault(key, [])
        if any(token == obs.token for token, _ in earlier):
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} (token {obs.token}) fired {obs.reminder!r} period "
                f"{obs.period} twice",
            )
        elif earlier:
            self.duplicates += 1
            self._judge_duplicate(obs)
        earlier.append((obs.token, obs.at_us))
        self.max_firings = max(self.max_firings, len(earlier))

    def _judge_duplicate(self, obs: ReminderFired) -> None:
        for gen in self.generations.get(obs.name, {}).get(obs.reminder, []):
            if not gen.live_at(obs.token) or (gen.due, gen.every) != (obs.due, obs.every):
                continue
            acked = [i for i, p in gen.acks if i < obs.token and p >= obs.period]
            if acked:
                self.violation(
                    obs.at_us,
                    obs.node,
                    f"{obs.name!r} (token {obs.token}) fired {obs.reminder!r} period "
                    f"{obs.period} again, though its firing was acknowledged at index "
                    f"{acked[0]}, before this activation was assigned",
                )

    def _ended(self, obs: ActivationEnded) -> None:
        act = (obs.node, obs.name, obs.token)
        self.ended[act] = obs.at_us
        start = self.starts.pop(act, None)
        if obs.why != "run-ended" or start is None or start.blocked:
            return
        known = self._known(obs.name, obs.token)
        own = [
            g
            for gens in self.generations.get(obs.name, {}).values()
            for g in gens
            if g.token == obs.token and g.index > obs.token
        ]
        for gen in (*known, *own):
            if gen.end is not None:
                continue
            first = 0 if gen in own else gen.latest(start.at_us) + 1
            last = gen.latest(obs.at_us - END_SLACK_US)
            for period in range(max(0, first), min(last, first + MAX_PERIODS) + 1):
                key = gen.key(obs.name, period)
                self.judged_running += 1
                if key not in self.firings:
                    self.violation(
                        obs.at_us,
                        obs.node,
                        f"{obs.name!r} (token {obs.token}) ran to the end with reminder "
                        f"{gen.reminder!r}, but its period due at t={key[2] / 1e6:.6f}s never "
                        "fired",
                    )
