"""Durable reminders in the cluster simulation (issue 19).

The reminders checker (``registry.sim.cluster.durable_checkers.Reminders``) is fed
synthetic histories — each rule R1–R4 must fail on its bad history and stay silent on the
good one — and then two planted bugs (``registry.sim.faults``) run end to end:

==================  ==================================================================
plant               what the checker reports
==================  ==================================================================
drop_reminders      R1: a FAILOVER start without its reminders never fires the periods
                    its lost predecessor missed
leak_reminders      R3: a stopped activation's timers fire on, with its old token
==================  ==================================================================

The many-seed run (tests/sim/test_cluster_sim.py) judges every seed with the checker.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from registry.sim.checks import RunEnded, judge
from registry.sim.cluster.durable_checkers import Reminders
from registry.sim.cluster.observations import (
    ActivationEnded,
    ActivationStarted,
    Assigned,
    ClusterObservation,
    ReminderApplied,
    ReminderFired,
    period_due_us,
)
from registry.sim.cluster.runner import run_cluster_seed
from registry.sim.faults import SimFaults

S = 1_000_000
DUE, EVERY = 1.0, 1.0
"""Period k is due at (1 + k) s."""


def _due(period: int) -> int:
    return period_due_us(DUE, EVERY, period)


def _set(index: int, token: int, at: int) -> ReminderApplied:
    return ReminderApplied(
        at_us=at,
        node="n1",
        index=index,
        name="w",
        token=token,
        reminder="r",
        op="set",
        due=DUE,
        every=EVERY,
        period=0,
        accepted=True,
    )


def _ack(index: int, token: int, period: int, at: int) -> ReminderApplied:
    return ReminderApplied(
        at_us=at,
        node="n1",
        index=index,
        name="w",
        token=token,
        reminder="r",
        op="fired",
        due=0.0,
        every=0.0,
        period=period,
        accepted=True,
    )


def _fire(node: str, token: int, period: int, at: int | None = None) -> ReminderFired:
    return ReminderFired(
        at_us=_due(period) if at is None else at,
        node=node,
        name="w",
        token=token,
        reminder="r",
        due=DUE,
        every=EVERY,
        period=period,
    )


def _start(node: str, token: int, at: int, reason: str = "failover") -> ActivationStarted:
    return ActivationStarted(at_us=at, node=node, name="w", token=token, reason=reason, initial=0)


def _end(node: str, token: int, start: int, at: int, why: str) -> ActivationEnded:
    return ActivationEnded(
        at_us=at,
        node=node,
        name="w",
        token=token,
        reason="new",
        why=why,
        start_us=start,
        final=0,
    )


def _history(
    *, refire_acked: bool = False, skip_catch_up: bool = False
) -> list[ClusterObservation]:
    """n1 (token 5) sets the reminder, fires periods 0–2 (acknowledged: 0 and 1; it
    crashes at 3.5 s before its ack of 2 commits); n2 (token 20) starts at 5.2 s, catches
    up periods 2–4 and runs to the end (8.5 s), firing 5–7. ``refire_acked``: the ack of
    1 commits at index 12 and n2 fires 1 again anyway."""
    h: list[ClusterObservation] = [
        _start("n1", 5, 100_000, reason="new"),
        _set(6, 5, 200_000),
        _fire("n1", 5, 0),
        _ack(7, 5, 0, _due(0) + 2_000),
        _fire("n1", 5, 1),
        _ack(12 if refire_acked else 8, 5, 1, _due(1) + 2_000),
        _fire("n1", 5, 2),
        _end("n1", 5, 100_000, 3_500_000, "crash"),
        Assigned(at_us=5_100_000, name="w", node="n2", token=20),
        _start("n2", 20, 5_200_000),
    ]
    catch_up = range(1 if refire_acked else 2, 5)
    for period in catch_up:
        if not (skip_catch_up and period == 3):
            h.append(_fire("n2", 20, period, at=5_200_001))
    h.append(_ack(21, 20, 4, 5_210_000))
    h += [_fire("n2", 20, 5), _fire("n2", 20, 6), _fire("n2", 20, 7)]
    h += [_end("n2", 20, 5_200_000, 8_500_000, "run-ended"), RunEnded(at_us=8_500_000)]
    return h


def _run(history: Sequence[ClusterObservation]) -> tuple[list[str], Reminders]:
    checker = Reminders()
    return judge(history, [checker]), checker


def test_a_failover_fires_the_missed_periods_and_counts_the_refire() -> None:
    violations, checker = _run(_history())
    assert violations == []
    # Period 2 fired twice (n1 was lost before its ack committed): an allowed duplicate.
    assert (checker.duplicates, checker.max_firings) == (1, 2)
    assert checker.owed_at_start == 3  # periods 2–4 caught up at n2's start
    assert max(checker.late_us) == 5_200_001 - _due(3)  # period 3 waited for the failover


def test_r1_a_missed_period_not_caught_up_by_the_next_holder() -> None:
    violations, _ = _run(_history(skip_catch_up=True))
    assert len(violations) == 1 and "did not fire its period due at t=4.000000s" in violations[0]


def test_r1_excuses_a_holder_that_ended_before_it_could() -> None:
    h = _history(skip_catch_up=True)
    h = [o for o in h if not (isinstance(o, ReminderFired) and o.token == 20)]
    h = [o for o in h if not (isinstance(o, ActivationEnded) and o.token == 20)]
    h.insert(h.index(_start("n2", 20, 5_200_000)) + 1, _end("n2", 20, 5_200_000, 5_200_000, "x"))
    assert _run(h)[0] == []


def test_r2_a_running_holder_that_skips_a_period() -> None:
    h = [o for o in _history() if not (isinstance(o, ReminderFired) and o.period == 7)]
    violations, _ = _run(h)
    assert len(violations) == 1 and "ran to the end" in violations[0], violations


def test_r3_a_firing_after_the_end_or_with_a_superseded_token() -> None:
    h = _history()
    assigned = Assigned(at_us=5_100_000, name="w", node="n2", token=20)
    h.insert(h.index(assigned) + 1, _fire("n1", 5, 4, at=5_150_000))
    violations, _ = _run(h)
    assert any("after that activation ended" in v for v in violations), violations
    assert any("stale token 5: the log already gave the name token 20" in v for v in violations)


def test_r4_a_period_fired_again_although_acknowledged_before_the_next_holder() -> None:
    violations, _ = _run(_history(refire_acked=True))
    assert len(violations) == 1, violations
    assert "period 1 again, though its firing was acknowledged at index 12" in violations[0]


@pytest.mark.parametrize(
    ("plant", "words"),
    [
        ("drop_reminders", "started with reminder 'beat' and did not fire"),
        ("leak_reminders", "after that activation ended"),
    ],
)
def test_planted_reminder_bug_is_caught(plant: str, words: str) -> None:
    result = run_cluster_seed(0, names=60, duration_s=8.0, faults=SimFaults(**{plant: True}))
    found = [v for v in result.violations if "[reminders]" in v]
    assert any(words in v for v in found), result.violations[:5]


def test_the_same_seed_without_a_plant_fires_every_period() -> None:
    result = run_cluster_seed(0, names=60, duration_s=8.0)
    assert result.violations == ()
    stats = result.stats
    assert stats["reminders_fired"] > 0 and stats["reminder_owed_at_start"] > 0
    assert stats["reminder_judged_running"] > 0
