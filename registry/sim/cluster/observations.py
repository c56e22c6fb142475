"""What the cluster harness observes and feeds to the registry checkers (G1–G5).

Like ``registry.sim.raft.observations`` for the Raft harness: each value is a frozen,
slotted, keyword-only dataclass carrying the true time (``at_us``) at which it was seen,
so every checker can be tested alone on a synthetic history (tests/sim/test_cluster_checkers.py).

Activations are reported twice: when they start (G2 needs the order of starts) and when
they end — when their stop actually ran, their host was killed or exited, or their node
crashed. G1 compares the true-time intervals ``[start_us, at_us)``. The heal phase uses
the shared ``PhaseStarted``/``GoalReached``/``RunEnded`` (``registry.sim.checks``);
``GoalReached`` is the first instant of a convergence that then held. Checkpoints are
seen as the log applies them (``CheckpointApplied``, ``RegisterApplied``: index order per
replica) and in the starts they restore (``ActivationStarted.restored_from``).
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.sim.checks.base import NodeObserved, Observed
from registry.sim.checks.phases import GoalReached, PhaseStarted, RunEnded

Segment = tuple[int, int]
"""A half-open stretch ``[start_us, end_us)`` of true time."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationStarted(NodeObserved):
    name: str
    token: int
    reason: str
    """``StartReason`` value: new, failover, handoff or restart."""
    initial: int
    """The counter value the worker starts from (decoded from the handed-over state, or
    from the checkpoint it was restored from)."""
    restored_from: int = 0
    """The log index of the checkpoint a FAILOVER or RESTART start was restored from
    (``ctx.restored_from``); 0: none."""
    blocked: bool = False
    """Its worker blocks its loop (``HandoffBehaviour.ignore_stop``): it handles nothing,
    reminders included."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActivationEnded(NodeObserved):
    name: str
    token: int
    reason: str
    """Its start reason (repeated so that a checker can read one observation alone)."""
    why: str
    """What ended it: a ``StopReason`` value, ``handoff`` (its worker answered
    ``Resume(state)``), ``handoff-restart`` (it answered ``Restart()``), ``handoff-deadline``,
    ``killed`` (SIGKILL of a host that ignored stop), ``watchdog`` (its host's sub-lease
    ran out), ``crash``, or ``run-ended`` for activations still running at the end."""
    start_us: int
    final: int
    """The counter value when it ended (what a handoff passed on)."""

    @property
    def live(self) -> Segment:
        """``[start_us, at_us)``: it may have run at any instant of it."""
        return (self.start_us, self.at_us)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointApplied(NodeObserved):
    """A ``Checkpoint`` entry was applied, seen once: at the first replica that applied
    its ``index`` (every replica applies the same entries with the same result)."""

    index: int
    name: str
    token: int
    seq: int
    count: int
    """The counter value it holds."""
    accepted: bool
    """The state machine kept it (False: refused, e.g. a stale token)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReminderApplied(NodeObserved):
    """A ``Remind`` entry was applied, seen once: at the first replica that applied its
    ``index``. ``op`` is ``set``, ``cancel`` or ``fired`` (``registry.core.durable``)."""

    index: int
    name: str
    token: int
    reminder: str
    op: str
    due: float
    """``set``: Unix seconds of period 0 (the model's wall clocks read true time)."""
    every: float
    """``set``: seconds between periods (0: once)."""
    period: int
    """``fired``: the period acknowledged."""
    accepted: bool
    """The state machine took it (False: refused, e.g. a stale token)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReminderFired(NodeObserved):
    """The worker of activation ``(name, token)`` on ``node`` handled period ``period`` of
    its reminder (``handle_reminder`` ran)."""

    name: str
    token: int
    reminder: str
    due: float
    every: float
    period: int


def period_due_us(due: float, every: float, period: int) -> int:
    """True time (µs) at which ``period`` is due (``StoredReminder.due_at``)."""
    return round((due + period * every) * 1e6)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterApplied(Observed):
    """A ``Register`` entry was applied with OK at ``index`` (seen once): ``names`` are
    new registrations, so no checkpoint before ``index`` belongs to them."""

    index: int
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class NameSpecified(Observed):
    """The workload is about to register ``name``; ``eligible`` is every node that could
    ever host it (roles, kinds and priority list)."""

    name: str
    eligible: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class OpAccepted(NodeObserved):
    """A leader accepted a client's register/unregister of ``names`` at ``index``."""

    op: str
    """``register`` or ``unregister``."""
    names: tuple[str, ...]
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OpAcked(NodeObserved):
    """The leader that accepted the op applied it with OK: the client was answered."""

    op: str
    names: tuple[str, ...]
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class OpUncertain(Observed):
    """An accepted op whose outcome the client never learned (its node crashed, the
    client timed out, or a snapshot skipped the entry): it may or may not commit."""

    op: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MajorityChanged(Observed):
    """The nodes connected with the majority of voters changed. ``group`` is the one
    maximal set of up nodes, pairwise connected both ways, that holds a majority of the
    voters — ``None`` when there is none or more than one (a bridge, a one-way cut)."""

    group: tuple[str, ...] | None
    leader: str = ""
    """The last node seen leading the highest term before the change (to tell leader
    losses apart; the failover checker restarts its clock when the group loses it)."""
    linked: tuple[str, ...] = ()
    """The up nodes linked both ways with ``leader`` (it included): a node outside the
    group but linked with the leader across a bridge keeps its lease, rightly."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderElected(Observed):
    """A node leads a term higher than any seen; ``linked`` as in ``MajorityChanged``."""

    leader: str
    linked: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Assigned(Observed):
    """The log gave ``name`` to ``node`` with ``token`` (seen when the first replica
    applied the entry, i.e. once it was committed); its worker may start later."""

    name: str
    node: str
    token: int


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRegistry:
    node: str
    registered: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FinalRegistry(Observed):
    """At the end of the run: the registered names in every live replica's state."""

    nodes: tuple[NodeRegistry, ...]


ClusterObservation = (
    ActivationStarted
    | ActivationEnded
    | CheckpointApplied
    | RegisterApplied
    | ReminderApplied
    | ReminderFired
    | NameSpecified
    | OpAccepted
    | OpAcked
    | OpUncertain
    | MajorityChanged
    | LeaderElected
    | Assigned
    | PhaseStarted
    | GoalReached
    | FinalRegistry
    | RunEnded
)
