"""Checkers for the registry guarantees G1–G5 (design §1), judged on a cluster history.

Each checker sees only observations (``registry.sim.cluster.observations``), never the cluster, so a
synthetic bad history proves it can fail (tests/sim/test_cluster_checkers.py).

==================  ====================================================================
checker             rule
==================  ====================================================================
single-activation   G1: no two activations of one name overlap in true time, each live
                    from its start until its stop ran / its host died (the model
                    runtime's own events, not lease possession)
fencing             G2: every activation's token is greater than every earlier one's
registrations       G3: every acknowledged registration (not later unregistered by an
                    acknowledged unregister) is registered in every live replica at the
                    end; an acknowledged unregister stays unregistered; a name whose
                    last op has an unknown outcome is in all live replicas or in none
failover            G4: after a node is lost (crash, cut off, paused) while a majority stays
                    connected, each name it ran runs again within ``bound_us``; the
                    latencies are kept for the distribution
heal                G5: after the calm phase begins, the cluster converges within its bound
handoff-state       G5: a HANDOFF start resumes exactly the count its predecessor ended
                    with; every other start (new, failover, restart) begins at zero; a
                    predecessor that answered ``Resume(state)`` is followed by a HANDOFF
                    start (or a FAILOVER, when its release never committed), never by a
                    RESTART — that would be its state dropped on the way (a FAILOVER or
                    RESTART restored from a checkpoint is judged by ``checkpoints``)
checkpoints         durable state (``durable_checkers``): kept checkpoints never go back
                    to an older token in log order; a FAILOVER/RESTART start resumes the
                    last checkpoint committed before its assignment
reminders           durable reminders (``durable_checkers``): every period fires at least
                    once, no later than the next holder's start; only the current
                    activation fires; a period fires again only in a holder assigned
                    before its firing was acknowledged
==================  ====================================================================

How G4 decides what counts (documented because it is a measurement, not a law):
a *loss* is a node leaving the majority group (``MajorityChanged``). Its names — those it
ran at that instant, that some node in the new group could host — open a sample each,
closed by the next start of that name with a higher token (anywhere, the same node after a
restart included). A later loss does not cancel an open sample, nor restart its clock: a
name whose failover is hit by a second fault simply takes longer, and the bound still
applies — with one exception: the group loses its *leader* (the highest-term leader
seen, ``MajorityChanged.leader``, is in the group before the change and not after it)
while the failover is still owed by the log, i.e. no new holder of the name in the new
group has been committed (``Assigned``). Only a leader fails a name over (it commits
``MemberDown``), and a newly elected leader may mark nobody down until ``down_after``
after its election (DESIGN §3, membership rule 5): what the lost leader had already
waited is gone by design, so the failover starts over (an election plus ``down_after``,
the very cost of a first loss) and the bound is judged from that leader loss. A name
already given to a node of the new group owes only its start: its clock keeps running,
so slowness after the commit (a slow host, say) is judged from the first loss. So does
everything else — a lost holder, a lost follower. The recorded latency stays the outage
a user saw (from the first loss); ``restarted`` counts the restarts.
A sample is cancelled only when the failover is no longer owed: no unique majority group
remains, the name is unregistered, or the lost node rejoins while its original activation
still runs (the loss healed first). Cancelled samples are counted by cause (``cancelled``);
the seeds test bounds their share over a run of seeds, since a checker that cancels
everything measures nothing.
Open samples at the end count only if they already exceed the bound.
One more case is not a loss yet: a *bridge*. A node cut off from the majority group but
still linked both ways with the leader (``MajorityChanged.linked``) keeps its lease, and
rightly so, for as long as that holds; its sample's clock starts when it stops holding (a
new leader not linked with it, ``LeaderElected``, or the bridge changing). Samples still
bridged at the end are cancelled ("kept across a bridge").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from registry.sim.checks.base import Checker, Suite, stamp
from registry.sim.checks.phases import BoundedPhase, RunEnded
from registry.sim.cluster.durable_checkers import Checkpoints, Reminders
from registry.sim.cluster.observations import (
    ActivationEnded,
    ActivationStarted,
    Assigned,
    ClusterObservation,
    FinalRegistry,
    LeaderElected,
    MajorityChanged,
    NameSpecified,
    OpAccepted,
    OpAcked,
    OpUncertain,
    Segment,
)

FAILOVER_BOUND_US = 6_000_000
"""Twice the 3 s failover target (DESIGN §5): per name, and a second fault during a
failover does not reset the clock (except the loss of the leader that owed it, see the
module docstring), so compound faults get headroom — a 10 s failover does not."""


def overlap(a: Sequence[Segment], b: Sequence[Segment]) -> Segment | None:
    """The first common stretch of two sorted lists of half-open segments."""
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            return (start, end)
        if a[i][1] <= b[j][1]:
            i += 1
        else:
            j += 1
    return None


class SingleActivation(Checker[ClusterObservation]):
    name = "single-activation"
    handles = (ActivationEnded,)

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[ActivationEnded]] = {}

    def feed(self, obs: ClusterObservation) -> None:
        assert isinstance(obs, ActivationEnded)
        earlier = self.seen.setdefault(obs.name, [])
        for other in earlier:
            if (other.node, other.token) == (obs.node, obs.token):
                continue
            common = overlap([other.live], [obs.live])
            if common is None:
                continue
            start, end = common
            self.violation(
                start,
                obs.node,
                f"{obs.name!r} ran twice for {(end - start) / 1e3:.1f}ms from {stamp(start)}: "
                f"on {other.node} (token {other.token}, {other.reason}, live "
                f"{_segments([other.live])}, ended: {other.why}) and on {obs.node} (token "
                f"{obs.token}, {obs.reason}, live {_segments([obs.live])}, ended: {obs.why})",
            )
        earlier.append(obs)


def _segments(live: Sequence[Segment]) -> str:
    shown = [f"{a / 1e6:.3f}-{b / 1e6:.3f}s" for a, b in live[:3]]
    return ",".join(shown) + ("…" if len(live) > 3 else "") if shown else "never"


class Fencing(Checker[ClusterObservation]):
    name = "fencing"
    handles = (ActivationStarted,)

    def __init__(self) -> None:
        super().__init__()
        self.highest: dict[str, tuple[int, str]] = {}

    def feed(self, obs: ClusterObservation) -> None:
        assert isinstance(obs, ActivationStarted)
        best = self.highest.get(obs.name)
        if best is not None and obs.token <= best[0]:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} started with token {obs.token}, not above token {best[0]} "
                f"of an earlier activation on {best[1]}",
            )
            return
        self.highest[obs.name] = (obs.token, obs.node)


class Registrations(Checker[ClusterObservation]):
    name = "registrations"
    handles = (OpAcked, OpUncertain, FinalRegistry)

    def __init__(self) -> None:
        super().__init__()
        self.expected: dict[str, OpAcked] = {}
        """name → the last acknowledged op that changed it."""
        self.uncertain: set[str] = set()
        """Names with an op of unknown outcome since their last acknowledged one (the
        workload runs one op per name at a time, so an op of unknown outcome commits
        before the next acknowledged one, or never: see the module docstring)."""
        self.checked = 0

    def feed(self, obs: ClusterObservation) -> None:
        if isinstance(obs, OpAcked):
            for name in obs.names:
                self.expected[name] = obs
                self.uncertain.discard(name)
        elif isinstance(obs, OpUncertain):
            self.uncertain.update(obs.names)
        else:
            assert isinstance(obs, FinalRegistry)
            self._final(obs)

    def _final(self, obs: FinalRegistry) -> None:
        if not obs.nodes:
            self.violation(obs.at_us, "", "no live replica at the end of the run")
            return
        for name in sorted(self.uncertain):
            holding = [node.node for node in obs.nodes if name in node.registered]
            if holding and len(holding) != len(obs.nodes):
                self.violation(
                    obs.at_us,
                    "",
                    f"replicas disagree on {name!r} (last op of unknown outcome): registered "
                    f"on {holding} only",
                )
        for name, ack in sorted(self.expected.items()):
            if name in self.uncertain:
                continue
            self.checked += 1
            for node in obs.nodes:
                present = name in node.registered
                if ack.op == "register" and not present:
                    self.violation(
                        obs.at_us,
                        node.node,
                        f"lost registration: {name!r} was acknowledged by {ack.node} at "
                        f"index {ack.index} ({stamp(ack.at_us)}) but is not registered",
                    )
                elif ack.op == "unregister" and present:
                    self.violation(
                        obs.at_us,
                        node.node,
                        f"{name!r} is registered although its unregister was acknowledged "
                        f"by {ack.node} at index {ack.index} ({stamp(ack.at_us)})",
                    )


@dataclass(slots=True)
class _Sample:
    name: str
    node: str
    token: int
    at_us: int
    """When the name's node was lost (the outage a user sees starts here)."""
    leader: bool
    """The lost node was the leader (the failover includes an election)."""
    clock_us: int = 0
    """When the bound's clock started: ``at_us``, or the last loss of the leader since."""
    clock_why: str = "a leader loss"
    bridged: bool = False
    """Lost to the group but still linked both ways with the leader (a bridge): it keeps
    its lease, rightly, so nothing is owed until it is not linked with the leader."""


class Failover(Checker[ClusterObservation]):
    name = "failover"
    handles = (
        MajorityChanged,
        LeaderElected,
        ActivationStarted,
        ActivationEnded,
        Assigned,
        NameSpecified,
        OpAccepted,
        RunEnded,
    )

    def __init__(self, bound_us: int = FAILOVER_BOUND_US) -> None:
        super().__init__()
        self.bound_us = bound_us
        self.group: tuple[str, ...] | None = None
        self.running: dict[str, tuple[str, int]] = {}
        self.eligible: dict[str, tuple[str, ...]] = {}
        self.assigned: dict[str, tuple[str, int]] = {}
        """name → (node, token) of its last committed holder."""
        self.open: dict[str, _Sample] = {}
        self.latencies_us: list[int] = []
        self.leader_latencies_us: list[int] = []
        """The subset of ``latencies_us`` where the lost node was the leader."""
        self.cancelled: dict[str, int] = {}
        """Samples cancelled because the failover was no longer owed, by cause."""
        self.unregistered: set[str] = set()
        """Names whose unregister was accepted and that no holder was assigned since: a
        loss of the node where the old activation still runs (a worker that ignores
        stop) owes them no failover."""
        self.restarted = 0
        """Clock restarts of open samples: the leader was lost mid-failover."""
        self.unbridged = 0
        """Clocks started late: the lost node stayed linked with the leader for a while."""

    def feed(self, obs: ClusterObservation) -> None:
        if isinstance(obs, ActivationStarted):
            self.running[obs.name] = (obs.node, obs.token)
            sample = self.open.get(obs.name)
            if sample is not None and obs.token > sample.token:
                del self.open[obs.name]
                self._measured(sample, obs.at_us, obs.node)
        elif isinstance(obs, ActivationEnded):
            if self.running.get(obs.name) == (obs.node, obs.token):
                del self.running[obs.name]
        elif isinstance(obs, Assigned):
            self.assigned[obs.name] = (obs.node, obs.token)
            self.unregistered.discard(obs.name)
        elif isinstance(obs, MajorityChanged):
            self._topology(obs)
        elif isinstance(obs, LeaderElected):
            self._unbridge(obs.linked, obs.at_us)
        elif isinstance(obs, NameSpecified):
            self.eligible[obs.name] = obs.eligible
        elif isinstance(obs, OpAccepted):
            if obs.op == "unregister":
                for name in obs.names:
                    self._censor(name, "unregistered")
                    self.unregistered.add(name)
        else:
            assert isinstance(obs, RunEnded)
            for name, sample in sorted(self.open.items()):
                if sample.bridged:
                    self._count("kept across a bridge")
                elif obs.at_us - sample.clock_us > self.bound_us:
                    self.violation(
                        obs.at_us,
                        sample.node,
                        f"{name!r} never ran again after {sample.node} was lost at "
                        f"{stamp(sample.at_us)}{_restart(sample)} (bound "
                        f"{self.bound_us / 1e6:g}s)",
                    )
                else:
                    self._count("still open at the end")
            self.open.clear()

    def _measured(self, sample: _Sample, at_us: int, where: str) -> None:
        latency = at_us - sample.at_us
        self.latencies_us.append(latency)
        if sample.leader:
            self.leader_latencies_us.append(latency)
        if not sample.bridged and at_us - sample.clock_us > self.bound_us:
            self.violation(
                at_us,
                where,
                f"{sample.name!r} ran again {latency / 1e6:.3f}s after {sample.node} was "
                f"lost at {stamp(sample.at_us)}{_restart(sample)} (bound "
                f"{self.bound_us / 1e6:g}s)",
            )

    @property
    def censored(self) -> int:
        return sum(self.cancelled.values())

    def _count(self, cause: str) -> None:
        self.cancelled[cause] = self.cancelled.get(cause, 0) + 1

    def _censor(self, name: str, cause: str) -> None:
        if self.open.pop(name, None) is not None:
            self._count(cause)

    def _owed_by_log(self, sample: _Sample, group: set[str]) -> bool:
        """No holder newer than the lost activation is committed in ``group``."""
        node, token = self.assigned.get(sample.name, ("", 0))
        return token <= sample.token or node not in group

    def _topology(self, obs: MajorityChanged) -> None:
        before, self.group = self.group, obs.group
        if obs.group is None or before is None:
            for name in sorted(self.open):
                self._censor(name, "no majority")
            return
        now = set(obs.group)
        lost = set(before) - now
        leader_lost = obs.leader in lost
        for name, sample in sorted(self.open.items()):
            if sample.node in now and self.running.get(name) == (sample.node, sample.token):
                self._censor(name, "healed")  # the loss healed before a failover was due
            elif leader_lost and self._owed_by_log(sample, now):
                sample.clock_us = obs.at_us  # a new leader starts the failover over
                sample.clock_why = "a leader loss"
                self.restarted += 1
        for name, (node, token) in sorted(self.running.items()):
            if name in self.open:
                continue  # already failing over: a second loss does not restart the clock
            if name in self.unregistered:
                continue  # its worker ignored the stop: still running, but not owed
            if node in lost and now.intersection(self.eligible.get(name, ())):
                self.open[name] = _Sample(
                    name=name,
                    node=node,
                    token=token,
                    at_us=obs.at_us,
                    leader=node == obs.leader,
                    clock_us=obs.at_us,
                    bridged=node in obs.linked,
                )
        self._unbridge(obs.linked, obs.at_us)

    def _unbridge(self, linked: tuple[str, ...], at_us: int) -> None:
        """A bridged sample's node is no longer linked with the leader (a new leader, or
        the bridge changed): its failover is owed from now."""
        for sample in self.open.values():
            if sample.bridged and sample.node not in linked:
                sample.bridged = False
                sample.clock_us = at_us
                sample.clock_why = "the end of a bridge to the leader"
                self.unbridged += 1


def _restart(sample: _Sample) -> str:
    if sample.clock_us == sample.at_us:
        return ""
    return f", clock restarted by {sample.clock_why} at {stamp(sample.clock_us)}"


class Heal(BoundedPhase):
    name = "heal"

    def late(self, elapsed_us: int, bound_us: int) -> str:
        return f"converged {elapsed_us / 1e6:.3f}s after the heal, bound {bound_us / 1e6:g}s"

    def missed(self, waited_us: int, bound_us: int, detail: str) -> str:
        return f"not converged {waited_us / 1e6:.3f}s after the heal: {detail}"


class HandoffState(Checker[ClusterObservation]):
    name = "handoff-state"
    handles = (ActivationStarted, ActivationEnded)

    def __init__(self) -> None:
        super().__init__()
        self.finals: dict[str, dict[int, tuple[int, str, str]]] = {}
        """name → token → (final count, node, why it ended) of ended activations."""
        self.handoffs = 0

    def feed(self, obs: ClusterObservation) -> None:
        if isinstance(obs, ActivationEnded):
            self.finals.setdefault(obs.name, {})[obs.token] = (obs.final, obs.node, obs.why)
            return
        assert isinstance(obs, ActivationStarted)
        if obs.reason == "restart":
            ended = self.finals.get(obs.name, {})
            earlier = [t for t in ended if t < obs.token]
            if earlier and ended[max(earlier)][2] == "handoff":
                final, node, _ = ended[max(earlier)]
                self.violation(
                    obs.at_us,
                    obs.node,
                    f"{obs.name!r} restarted without state (token {obs.token}) although {node} "
                    f"(token {max(earlier)}) handed off with Resume(state={final})",
                )
        if obs.reason != "handoff":
            if obs.initial != 0 and not obs.restored_from:  # a restore: ``Checkpoints``
                self.violation(
                    obs.at_us,
                    obs.node,
                    f"{obs.name!r} started ({obs.reason}, token {obs.token}) with count "
                    f"{obs.initial}; only a handoff or a checkpoint carries state",
                )
            return
        self.handoffs += 1
        ended = self.finals.get(obs.name, {})
        earlier = [t for t in ended if t < obs.token]
        if not earlier:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} started by handoff (token {obs.token}) with no earlier "
                "activation to hand it off",
            )
            return
        token = max(earlier)
        final, node, _ = ended[token]
        if obs.initial < final:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} went backwards across a handoff: {node} (token {token}) "
                f"ended at {final}, {obs.node} (token {obs.token}) resumed at {obs.initial}",
            )
        elif obs.initial > final:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} resumed at {obs.initial} after a handoff, but {node} "
                f"(token {token}) ended at {final}",
            )


def cluster_checkers() -> list[Checker[Any]]:
    return [
        SingleActivation(),
        Fencing(),
        Registrations(),
        Failover(),
        Heal(),
        HandoffState(),
        Checkpoints(),
        Reminders(),
    ]


class ClusterSuite(Suite):
    """The cluster simulation's checkers (all of them unless told otherwise)."""

    def __init__(self, checkers: list[Any] | None = None) -> None:
        super().__init__(checkers if checkers is not None else cluster_checkers())
