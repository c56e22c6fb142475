"""One checker base for every simulated application, and the suite that routes to them.

A checker is a small judge of a *history*: it subscribes to the observation types it
needs (``handles``), is fed observations one at a time in true-time order, and turns what
it sees into violations — readable one-liners that say when, where and what, e.g.
``t=12.345678s n2 [election-safety] term 7 has two leaders: n1 and n2``. It never looks
at a cluster, a harness or a world, only at observations, so any source of observations
(the model harnesses, the production shell under virtual time, a synthetic bad history
in a test) can be judged by the same checkers: ``judge(observations, checkers)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

ObsT = TypeVar("ObsT")
T = TypeVar("T")

MAX_REPORTED = 20
"""Violations kept per checker; one bug tends to repeat, the first ones say it all."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """Base of every observation: the true time at which it was seen."""

    at_us: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeObserved(Observed):
    """An observation of one node."""

    node: str


def stamp(at_us: int) -> str:
    """True time as violations print it: ``t=12.345678s``."""
    return f"t={at_us / 1e6:.6f}s"


class Checker(Generic[ObsT]):
    """Base of every checker; ``ObsT`` is the observation type it is fed."""

    name: ClassVar[str] = "checker"
    handles: ClassVar[tuple[type, ...]] = ()

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.suppressed = 0

    @property
    def count(self) -> int:
        """Violations found, including those not kept for the report."""
        return len(self.violations) + self.suppressed

    def feed(self, obs: ObsT) -> None:
        raise NotImplementedError

    def violation(self, at_us: int, node: str, text: str) -> None:
        if len(self.violations) >= MAX_REPORTED:
            self.suppressed += 1
            return
        self.violations.append(f"{stamp(at_us)} {node or '-'} [{self.name}] {text}")

    def report(self) -> list[str]:
        more = [f"[{self.name}] … and {self.suppressed} more"] if self.suppressed else []
        return self.violations + more


class Suite:
    """Routes each observation to the checkers that handle its type (exact type)."""

    def __init__(self, checkers: Sequence[Checker[Any]]) -> None:
        self.checkers = list(checkers)
        self._routes: dict[type, list[Checker[Any]]] = {}
        for checker in self.checkers:
            for kind in checker.handles:
                self._routes.setdefault(kind, []).append(checker)

    def feed(self, obs: object) -> None:
        for checker in self._routes.get(type(obs), ()):
            checker.feed(obs)

    def violations(self) -> list[str]:
        return [line for checker in self.checkers for line in checker.report()]

    def get(self, kind: type[T]) -> T:
        """The suite's checker of class ``kind`` (for its measurements)."""
        return next(c for c in self.checkers if isinstance(c, kind))


def judge(observations: Iterable[object], checkers: Sequence[Checker[Any]]) -> list[str]:
    """Feed a whole observation log, in order, to ``checkers``; their violations."""
    suite = Suite(checkers)
    for obs in observations:
        suite.feed(obs)
    return suite.violations()
