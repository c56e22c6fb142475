"""Checks shared by every simulated application: the checker base, the suite, the
bounded phase (liveness / heal). The family checkers live in ``registry.sim.raft`` and
``registry.sim.cluster``."""

from __future__ import annotations

from registry.sim.checks.base import MAX_REPORTED, Checker, Suite, judge, stamp
from registry.sim.checks.phases import BoundedPhase, GoalReached, PhaseStarted, RunEnded

__all__ = [
    "MAX_REPORTED",
    "BoundedPhase",
    "Checker",
    "GoalReached",
    "PhaseStarted",
    "RunEnded",
    "Suite",
    "judge",
    "stamp",
]
