"""Every registry checker can fail: each is fed a synthetic bad history and must report it
(and stays silent on the matching good history). Also the harness's pure helpers: the
majority group and the independent placement oracle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from registry.core.commands import NameSpec
from registry.sim.checks import Checker, GoalReached, PhaseStarted, RunEnded, judge
from registry.sim.cluster.checkers import (
    Failover,
    Fencing,
    HandoffState,
    Heal,
    Registrations,
    SingleActivation,
    overlap,
)
from registry.sim.cluster.durable_checkers import Checkpoints
from registry.sim.cluster.harness import ClusterConfig, majority_group
from registry.sim.cluster.heal import oracle_owner
from registry.sim.cluster.observations import (
    ActivationEnded,
    ActivationStarted,
    Assigned,
    CheckpointApplied,
    ClusterObservation,
    FinalRegistry,
    LeaderElected,
    MajorityChanged,
    NameSpecified,
    NodeRegistry,
    OpAccepted,
    OpAcked,
    OpUncertain,
    RegisterApplied,
    Segment,
)

S = 1_000_000
ALL = ("n1", "n2", "n3")


def run(checker: Checker[Any], history: Sequence[ClusterObservation]) -> list[str]:
    return judge(history, [checker])


def started(
    node: str, name: str, token: int, at: int = 0, reason: str = "new", initial: int = 0
) -> ActivationStarted:
    return ActivationStarted(
        at_us=at, node=node, name=name, token=token, reason=reason, initial=initial
    )


def ended(
    node: str,
    name: str,
    token: int,
    live: Segment,
    final: int = 0,
    reason: str = "new",
    why: str = "quorum_lost",
) -> ActivationEnded:
    start, end = live
    return ActivationEnded(
        at_us=end,
        node=node,
        name=name,
        token=token,
        reason=reason,
        why=why,
        start_us=start,
        final=final,
    )


def test_overlap_of_half_open_segments() -> None:
    assert overlap([(0, 10)], [(10, 20)]) is None
    assert overlap([(0, 5), (8, 12)], [(5, 8), (11, 30)]) == (11, 12)
    assert overlap([], [(0, 1)]) is None


def test_single_activation() -> None:
    good = [
        ended("n1", "a", 3, (0, 2 * S)),
        ended("n2", "a", 9, (2 * S, 3 * S)),  # starts the instant the first one ends
        ended("n3", "b", 4, (0, 3 * S)),  # another name
    ]
    assert run(SingleActivation(), good) == []
    # Live until the stop actually ran: a paused node's or an unleased node's activation
    # counts until its host was killed, whatever the lease said.
    bad = [ended("n1", "a", 3, (0, 2 * S), why="killed"), ended("n2", "a", 9, (S, 3 * S))]
    [line] = run(SingleActivation(), bad)
    assert "'a' ran twice for 1000.0ms from t=1.000000s" in line
    assert "on n1 (token 3" in line and "on n2 (token 9" in line
    assert line.startswith("t=1.000000s n2 [single-activation]")


def test_fencing() -> None:
    good = [started("n1", "a", 3), started("n2", "a", 7), started("n1", "b", 2)]
    assert run(Fencing(), good) == []
    [same] = run(Fencing(), [*good, started("n3", "a", 7)])
    assert "'a' started with token 7, not above token 7 of an earlier activation on n2" in same
    [lower] = run(Fencing(), [*good, started("n3", "a", 5)])
    assert "token 5, not above token 7" in lower


def acked(op: str, names: tuple[str, ...], index: int, at: int = 0) -> OpAcked:
    return OpAcked(at_us=at, node="n1", op=op, names=names, index=index)


def final(*registries: tuple[str, ...]) -> FinalRegistry:
    nodes = tuple(
        NodeRegistry(node=f"n{i}", registered=names) for i, names in enumerate(registries, 1)
    )
    return FinalRegistry(at_us=60 * S, nodes=nodes)


def test_registrations() -> None:
    history: list[ClusterObservation] = [
        acked("register", ("a", "b", "c"), 10),
        acked("unregister", ("c",), 20),
    ]
    checker = Registrations()
    assert run(checker, [*history, final(("a", "b"), ("a", "b"))]) == []
    assert checker.checked == 3
    [lost] = run(Registrations(), [*history, final(("a", "b"), ("a",))])
    assert lost.startswith("t=60.000000s n2 [registrations] lost registration: 'b'")
    assert "acknowledged by n1 at index 10" in lost
    [back] = run(Registrations(), [*history, final(("a", "b", "c"), ("a", "b"))])
    assert "'c' is registered although its unregister was acknowledged" in back
    # An unregister of unknown outcome after the last ack: either answer is right.
    unsure = [*history, OpUncertain(at_us=0, op="unregister", names=("b",))]
    assert run(Registrations(), [*unsure, final(("a",), ("a",))]) == []
    # ... until a later acknowledged op settles it again.
    settled = [*unsure, acked("register", ("b",), 30)]
    [again] = run(Registrations(), [*settled, final(("a",), ("a", "b"))])
    assert "lost registration: 'b'" in again
    [none] = run(Registrations(), [*history, FinalRegistry(at_us=0, nodes=())])
    assert "no live replica" in none
    # Unknown outcome still means one answer for all replicas.
    [split] = run(Registrations(), [*unsure, final(("a", "b"), ("a",))])
    assert "replicas disagree on 'b' (last op of unknown outcome): registered on ['n1']" in split


def topology(group: tuple[str, ...] | None, at: int = 0, leader: str = "") -> MajorityChanged:
    return MajorityChanged(at_us=at, group=group, leader=leader)


def eligible(name: str, nodes: tuple[str, ...] = ALL) -> NameSpecified:
    return NameSpecified(at_us=0, name=name, eligible=nodes)


def test_failover_records_latency_and_flags_slow_ones() -> None:
    base: list[ClusterObservation] = [
        eligible("a"),
        eligible("b"),
        topology(ALL),
        started("n1", "a", 3),
        started("n2", "b", 4),
        topology(("n2", "n3"), at=10 * S, leader="n1"),
    ]
    checker = Failover(bound_us=30 * S)
    assert run(checker, [*base, started("n3", "a", 20, at=12_500_000, reason="failover")]) == []
    assert checker.latencies_us == [2_500_000] and checker.leader_latencies_us == [2_500_000]
    [slow] = run(Failover(bound_us=30 * S), [*base, started("n3", "a", 20, at=41 * S)])
    assert "'a' ran again 31.000s after n1 was lost at t=10.000000s (bound 30s)" in slow
    [never] = run(Failover(bound_us=30 * S), [*base, RunEnded(at_us=45 * S)])
    assert "'a' never ran again after n1 was lost" in never
    # Ended before the bound: censored, not a failure.
    checker = Failover(bound_us=30 * S)
    assert run(checker, [*base, RunEnded(at_us=20 * S)]) == []
    assert checker.cancelled == {"still open at the end": 1}


def test_failover_censors_what_it_cannot_judge() -> None:
    base: list[ClusterObservation] = [
        eligible("a"),
        eligible("only-n1", ("n1",)),
        topology(ALL),
        started("n1", "a", 3),
        started("n1", "only-n1", 5),
        topology(("n2", "n3"), at=10 * S),
    ]
    late = RunEnded(at_us=100 * S)
    # Nobody left could host "only-n1": no sample for it.
    checker = Failover()
    run(checker, [*base, started("n2", "a", 9, at=12 * S), late])
    assert checker.latencies_us == [2 * S]
    # An ambiguous topology before the name runs again: no failover is owed.
    checker = Failover()
    assert run(checker, [*base, topology(None, at=11 * S), late]) == []
    assert checker.cancelled == {"no majority": 1} and checker.latencies_us == []
    # A second loss does not cancel the sample, nor restart its clock: the bound holds.
    second = topology(("n2", "n3"), at=11 * S)
    checker = Failover(bound_us=6 * S)
    third = [topology(("n2",), at=10_500_000), second]
    assert run(checker, [*base, *third, started("n2", "a", 9, at=15 * S)]) == []
    assert checker.latencies_us == [5 * S] and checker.censored == 0
    [slow] = run(Failover(bound_us=6 * S), [*base, *third, started("n2", "a", 9, at=17 * S)])
    assert "'a' ran again 7.000s after n1 was lost at t=10.000000s (bound 6s)" in slow
    # The loss heals while the original activation still runs.
    checker = Failover()
    assert run(checker, [*base, topology(ALL, at=11 * S), late]) == []
    assert checker.cancelled == {"healed": 1}
    # The name is unregistered meanwhile.
    gone = OpAccepted(at_us=11 * S, node="n2", op="unregister", names=("a",), index=30)
    checker = Failover()
    assert run(checker, [*base, gone, late]) == []
    assert checker.cancelled == {"unregistered": 1}


def test_failover_clock_restarts_only_when_the_leader_is_lost() -> None:
    """Seed 19's shape: n2 is lost at 10 s; the group that must fail its name over then
    loses its leader twice (new elections, new ``down_after``); the name runs 6.5 s after
    the first loss, 3.5 s after the last leader loss. Losing a follower restarts nothing."""
    five = ("n1", "n2", "n3", "n4", "n5")
    base: list[ClusterObservation] = [
        eligible("a", five),
        topology(five, leader="n2"),
        started("n2", "a", 3),
        topology(("n1", "n3", "n4", "n5"), at=10 * S, leader="n2"),
        ended("n2", "a", 3, (0, 11 * S)),  # n2 fenced: its return heals nothing
    ]
    late = started("n4", "a", 9, at=16_500_000, reason="failover")
    leader_losses = [
        topology(("n1", "n2", "n3"), at=12 * S, leader="n5"),
        topology(("n2", "n3", "n5"), at=13 * S, leader="n1"),
    ]
    checker = Failover(bound_us=6 * S)
    assert run(checker, [*base, *leader_losses, late]) == []
    assert checker.latencies_us == [6_500_000], "the outage a user saw, from the first loss"
    assert checker.restarted == 2 and checker.censored == 0
    # Still judged from the last leader loss: 6.5 s after it is too late.
    [slow] = run(
        Failover(bound_us=6 * S),
        [*base, *leader_losses, started("n4", "a", 9, at=19_500_000)],
    )
    assert "9.500s after n2 was lost at t=10.000000s, clock restarted by a leader loss at " in slow
    [never] = run(Failover(bound_us=6 * S), [*base, *leader_losses, RunEnded(at_us=20 * S)])
    assert "never ran again" in never and "leader loss at t=13.000000s" in never
    # Given to n4 (committed) before the leader was lost: n4 stays in the group, so only
    # its start is owed and the clock keeps running (slowness after the commit counts).
    given = Assigned(at_us=11 * S, name="a", node="n4", token=9)
    checker = Failover(bound_us=6 * S)
    keeps_n4 = topology(("n1", "n3", "n4"), at=12 * S, leader="n5")
    [slow] = run(checker, [*base, given, keeps_n4, late])
    assert "'a' ran again 6.500s after n2 was lost at t=10.000000s (bound 6s)" in slow
    assert checker.restarted == 0
    # ...but given to a node the new group has lost, it is owed again: restarted.
    checker = Failover(bound_us=6 * S)
    assert run(checker, [*base, given, *leader_losses, late]) == []
    assert checker.restarted == 2
    # The same changes with the leader (n3) staying in every group: no restart.
    followers = [
        topology(("n1", "n2", "n3"), at=12 * S, leader="n3"),
        topology(("n2", "n3", "n5"), at=13 * S, leader="n3"),
    ]
    checker = Failover(bound_us=6 * S)
    [slow] = run(checker, [*base, *followers, late])
    assert "'a' ran again 6.500s after n2 was lost at t=10.000000s (bound 6s)" in slow
    assert checker.restarted == 0


def test_heal() -> None:
    begin = PhaseStarted(at_us=30 * S, bound_us=30 * S)
    checker = Heal()
    assert run(checker, [begin, GoalReached(at_us=32 * S), RunEnded(at_us=32 * S)]) == []
    assert checker.elapsed_us == 2 * S
    [late] = run(Heal(), [begin, GoalReached(at_us=61 * S)])
    assert "converged 31.000s after the heal, bound 30s" in late
    [never] = run(Heal(), [begin, RunEnded(at_us=60 * S, detail="'x' runs on no node")])
    assert "not converged 30.000s after the heal: 'x' runs on no node" in never


def test_handoff_state() -> None:
    history: list[ClusterObservation] = [
        started("n1", "a", 3),
        ended("n1", "a", 3, (0, S), final=7, why="handoff"),
    ]
    checker = HandoffState()
    good = started("n2", "a", 9, reason="handoff", initial=7)
    assert run(checker, [*history, good]) == []
    assert checker.handoffs == 1
    [back] = run(HandoffState(), [*history, started("n2", "a", 9, reason="handoff", initial=5)])
    assert "'a' went backwards across a handoff: n1 (token 3) ended at 7" in back
    [ahead] = run(HandoffState(), [*history, started("n2", "a", 9, reason="handoff", initial=8)])
    assert "resumed at 8 after a handoff, but n1 (token 3) ended at 7" in ahead
    reset = started("n2", "a", 9, reason="failover", initial=0)
    assert run(HandoffState(), [*history, reset]) == []
    [kept] = run(HandoffState(), [*history[:1], started("n2", "a", 9, reason="restart", initial=7)])
    assert "started (restart, token 9) with count 7; only a handoff or a checkpoint" in kept
    restored = replace(started("n2", "a", 9, reason="restart", initial=7), restored_from=5)
    assert run(HandoffState(), [*history[:1], restored]) == []  # judged by Checkpoints
    # Resume(state) was answered, yet the successor restarted without it: state dropped.
    [dropped] = run(HandoffState(), [*history, started("n2", "a", 9, reason="restart")])
    assert "'a' restarted without state (token 9) although n1 (token 3) handed off" in dropped
    # A worker that answered Restart() may well be followed by a RESTART start.
    restarted = ended("n1", "a", 3, (0, S), why="handoff-restart")
    assert (
        run(HandoffState(), [history[0], restarted, started("n2", "a", 9, reason="restart")]) == []
    )
    [orphan] = run(HandoffState(), [started("n2", "b", 9, reason="handoff", initial=1)])
    assert "with no earlier activation to hand it off" in orphan


def ckpt(
    index: int, token: int, count: int, seq: int = 0, accepted: bool = True, name: str = "a"
) -> CheckpointApplied:
    return CheckpointApplied(
        at_us=index,
        node="n1",
        index=index,
        name=name,
        token=token,
        seq=seq or index,
        count=count,
        accepted=accepted,
    )


def restored(
    token: int, initial: int, restored_from: int, reason: str = "failover"
) -> ActivationStarted:
    start = started("n2", "a", token, at=token, reason=reason, initial=initial)
    return replace(start, restored_from=restored_from)


def test_checkpoints_order() -> None:
    good: list[ClusterObservation] = [
        ckpt(10, 3, 1),
        ckpt(11, 3, 2),
        ckpt(12, 3, 2, accepted=False),
        ckpt(30, 20, 5),
    ]
    checker = Checkpoints()
    assert run(checker, good) == []
    assert (checker.applied, checker.refused) == (3, 1)
    # The plant: a checkpoint of token 3 kept after token 20's.
    [stale] = run(Checkpoints(), [*good, ckpt(31, 3, 2)])
    assert "'a': a checkpoint of token 3 (count 2) was applied at index 31, after one of " in stale
    assert "the newer token 20 at index 30: stale state overwrote" in stale
    # Seen out of index order (a lagging first applier): judged by index, not arrival.
    [early] = run(Checkpoints(), [ckpt(30, 20, 5), ckpt(10, 3, 1), ckpt(40, 3, 1)])
    assert "token 3 (count 1) was applied at index 40, after one of the newer token 20" in early
    [late] = run(Checkpoints(), [ckpt(40, 20, 5), ckpt(50, 3, 1, accepted=True)])
    assert "after one of the newer token 20 at index 40" in late


def test_checkpoints_restore() -> None:
    history: list[ClusterObservation] = [
        RegisterApplied(at_us=0, index=2, names=("a",)),
        ckpt(10, 3, 1),
        ckpt(11, 3, 4),
    ]
    checker = Checkpoints()
    assert run(checker, [*history, restored(20, 4, 11)]) == []
    assert checker.restores == 1
    # A resend (seq not above the kept one's) changes nothing: 11 stays the last one.
    assert run(Checkpoints(), [*history, ckpt(12, 3, 9, seq=11), restored(20, 4, 11)]) == []
    [older] = run(Checkpoints(), [*history, restored(20, 1, 10)])
    assert "restored from index 10; the last checkpoint committed before it is index 11" in older
    [lost] = run(Checkpoints(), [*history, restored(20, 0, 0, reason="restart")])
    assert "'a' started (restart, token 20) at count 0, restored from index 0" in lost
    # Checkpoints at or after the start's own assignment (its token) are not its to restore.
    assert run(Checkpoints(), [*history, ckpt(25, 20, 7), restored(20, 4, 11)]) == []
    # Registered again at 15: the earlier checkpoints were dropped with the old name.
    again = RegisterApplied(at_us=15, index=15, names=("a",))
    assert run(Checkpoints(), [*history, again, restored(20, 0, 0)]) == []
    [ghost] = run(Checkpoints(), [*history, again, restored(20, 4, 11)])
    assert "no checkpoint was committed since its registration at index 15" in ghost
    # HANDOFF and NEW starts are not restores.
    assert run(Checkpoints(), [*history, restored(20, 9, 0, reason="handoff")]) == []


def test_majority_group() -> None:
    voters = frozenset(("n1", "n2", "n3"))
    nodes = ["n1", "n2", "n3", "n4"]
    up = {"n1", "n2", "n3", "n4"}
    cut: set[tuple[str, str]] = set()

    def group() -> tuple[str, ...] | None:
        return majority_group(nodes, voters, up.__contains__, lambda a, b: (a, b) in cut)

    assert group() == ("n1", "n2", "n3", "n4")
    up.discard("n3")
    assert group() == ("n1", "n2", "n4")
    up.discard("n2")
    assert group() is None  # one voter of three
    up.update(("n2", "n3"))
    cut.update({("n1", "n3"), ("n3", "n1")})  # bridge: n1 <-> n2 <-> n3, n4 sees all
    assert group() is None
    cut.clear()
    cut.add(("n4", "n1"))  # one-way: n4 cannot reach n1
    assert group() is None
    cut.clear()
    cut.update({(a, "n4") for a in voters} | {("n4", a) for a in voters})  # learner cut off
    assert group() == ("n1", "n2", "n3")


def test_placement_oracle() -> None:
    config = ClusterConfig(
        nodes=4,
        roles={"n1": ("web",), "n2": ("web",), "n3": ("batch",), "n4": ("web",)},
        kinds={"n4": ("counter",)},
    )
    up = {"n1", "n2", "n3", "n4"}
    web = NameSpec(name="x", kind="session", roles=("web",))
    assert oracle_owner(web, up, config) in ("n1", "n2")  # n3 lacks the role, n4 the kind
    assert oracle_owner(web, {"n2", "n3"}, config) == "n2"
    assert oracle_owner(web, {"n3"}, config) is None
    tiers = NameSpec(name="y", kind="counter", priority=(("n3",), ("n1", "n2")))
    assert oracle_owner(tiers, up, config) == "n3"
    assert oracle_owner(tiers, {"n1", "n2"}, config) in ("n1", "n2")
    # The ring spreads names: over many names every eligible node owns some.
    owners = {oracle_owner(NameSpec(name=f"w{i}", kind="counter"), up, config) for i in range(200)}
    assert owners == up


def test_failover_waits_while_the_lost_node_is_bridged_to_the_leader() -> None:
    """Seed 33's shape (``--transfers``): a bridge ``n1 <-> n2 <-> rest`` leaves n1 out of
    the majority group, but its leader n2 still reaches n1, which keeps its lease and its
    names, rightly. A transfer to n4 at 14 s cuts n1 off: its failover is owed from then."""
    five = ("n1", "n2", "n3", "n4", "n5")
    rest = ("n2", "n3", "n4", "n5")
    base: list[ClusterObservation] = [
        eligible("a", five),
        topology(five, leader="n2"),
        started("n1", "a", 3),
        MajorityChanged(at_us=10 * S, group=rest, leader="n2", linked=("n1", *rest)),
    ]
    moved = LeaderElected(at_us=14 * S, leader="n4", linked=rest)
    checker = Failover(bound_us=6 * S)
    assert run(checker, [*base, moved, started("n4", "a", 9, at=17 * S)]) == []
    assert checker.latencies_us == [7 * S], "the outage counts from the bridge, as seen"
    assert checker.unbridged == 1
    # Still owed from the leader change: 6 s after it is too late.
    [slow] = run(Failover(bound_us=6 * S), [*base, moved, started("n4", "a", 9, at=21 * S)])
    assert "clock restarted by the end of a bridge to the leader at t=14.000000s" in slow
    # Bridged to the end: nothing was owed.
    checker = Failover(bound_us=6 * S)
    assert run(checker, [*base, RunEnded(at_us=30 * S)]) == []
    assert checker.cancelled == {"kept across a bridge": 1}
    # Not linked with the leader (a plain partition): the clock runs from the loss.
    cut = MajorityChanged(at_us=10 * S, group=rest, leader="n2", linked=rest)
    [late] = run(Failover(bound_us=6 * S), [*base[:3], cut, started("n4", "a", 9, at=17 * S)])
    assert "'a' ran again 7.000s after n1 was lost at t=10.000000s (bound 6s)" in late
