"""What the harness observes and feeds to the checkers.

Why a separate vocabulary: checkers judge a *history*, not a live cluster, so each can be
tested alone by feeding it a synthetic bad history (tests/sim/test_checkers.py). Every
observation is a frozen, slotted, keyword-only dataclass carrying the true time at which
it was seen (``at_us``) and, where one node is concerned, that node. The calm phase
uses the shared ``PhaseStarted``/``GoalReached``/``RunEnded`` (``registry.sim.checks``).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.core.messages import Entry
from registry.sim.checks.base import NodeObserved, Observed
from registry.sim.checks.phases import GoalReached, PhaseStarted, RunEnded


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElected(NodeObserved):
    """``node`` was seen acting as leader of ``term`` for the first time."""

    term: int
    snapshot_index: int
    """Last index covered by the new leader's snapshot."""
    log: tuple[Entry, ...]
    """The new leader's entries after its snapshot."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Applied(NodeObserved):
    """``node`` applied ``entry`` to its state machine; ``digest`` is the state after."""

    entry: Entry
    digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Restored(NodeObserved):
    """``node``'s state machine was (re)loaded at ``index`` — from a snapshot installed by
    the leader, or from its own disk at restart (``index`` 0: empty state)."""

    index: int
    digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseHolder:
    node: str
    term: int
    remaining: int
    """``lease_remaining()`` in the node's ticks."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseSample(Observed):
    """Who holds a leader lease and who acts as leader, among live nodes; sampled
    whenever either set changes."""

    holders: tuple[LeaseHolder, ...]
    leaders: tuple[tuple[str, int], ...] = ()
    """(node, term) of every live node in the leader role."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeLog:
    node: str
    snapshot_index: int
    entries: tuple[Entry, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSample(Observed):
    """Every node's log at a checkpoint (live nodes: in memory; crashed: on disk)."""

    logs: tuple[NodeLog, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Acked(NodeObserved):
    """A client was told its proposal ``data`` is committed at ``index``."""

    index: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadRequested(NodeObserved):
    context: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadServed(NodeObserved):
    """``node`` answered read ``context`` with read index ``index``."""

    context: int
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeFinal:
    node: str
    applied_index: int
    digest: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalState(Observed):
    """At the end of the run: every live member's applied index and state digest."""

    nodes: tuple[NodeFinal, ...]


Observation = (
    LeaderElected
    | Applied
    | Restored
    | LeaseSample
    | LogSample
    | Acked
    | ReadRequested
    | ReadServed
    | FinalState
    | PhaseStarted
    | GoalReached
    | RunEnded
)
