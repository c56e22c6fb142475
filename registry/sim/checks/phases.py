"""The bounded phase every run ends with, and the one checker that judges it.

Safety alone is easy to satisfy (a cluster that does nothing is safe). So after the
nemesis phase every run heals the world and demands that a goal be reached within a
bound: the Raft run's liveness (a leader and a fresh write everywhere), the registry
run's convergence (G5). The observations are shared: ``PhaseStarted`` (with the bound),
``GoalReached`` (once), ``RunEnded`` (with the cluster's state in one line). A family
names its checker and words its two violations; the rule is written once here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from registry.sim.checks.base import Checker, Observed


@dataclass(frozen=True, slots=True, kw_only=True)
class PhaseStarted(Observed):
    """The nemesis stopped; the goal must be reached within ``bound_us``."""

    bound_us: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GoalReached(Observed):
    """The phase's goal held (first instant it held, for a goal that must hold a while)."""

    node: str = ""
    """The node that showed it, where one did (the Raft leader)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunEnded(Observed):
    detail: str = ""
    """The cluster's state in one line, quoted by checkers that fail at the end."""


PhaseObservation = PhaseStarted | GoalReached | RunEnded


class BoundedPhase(Checker[PhaseObservation]):
    """The goal is reached within the bound after ``PhaseStarted``, or it is a violation
    (reached late, or never by ``RunEnded``)."""

    handles: ClassVar[tuple[type, ...]] = (PhaseStarted, GoalReached, RunEnded)

    def __init__(self) -> None:
        super().__init__()
        self.started: PhaseStarted | None = None
        self.elapsed_us: int | None = None
        """How long the phase took to reach its goal."""

    def late(self, elapsed_us: int, bound_us: int) -> str:
        raise NotImplementedError

    def missed(self, waited_us: int, bound_us: int, detail: str) -> str:
        raise NotImplementedError

    def feed(self, obs: PhaseObservation) -> None:
        if isinstance(obs, PhaseStarted):
            self.started = obs
        elif isinstance(obs, GoalReached):
            if self.started is not None and self.elapsed_us is None:
                self.elapsed_us = obs.at_us - self.started.at_us
                if self.elapsed_us > self.started.bound_us:
                    self.violation(
                        obs.at_us, obs.node, self.late(self.elapsed_us, self.started.bound_us)
                    )
        elif self.started is not None and self.elapsed_us is None:
            waited = obs.at_us - self.started.at_us
            self.violation(obs.at_us, "", self.missed(waited, self.started.bound_us, obs.detail))
