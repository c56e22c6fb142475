"""Every checker can fail: each is fed a synthetic bad history and must report it (and
stays silent on the matching good history)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from registry.core.messages import Entry
from registry.sim.checks import Checker, GoalReached, PhaseStarted, RunEnded, judge
from registry.sim.raft.checkers import (
    Durability,
    ElectionSafety,
    LeaderCompleteness,
    LeaderLease,
    Liveness,
    LogMatching,
    ReadIndex,
    StateMachineSafety,
)
from registry.sim.raft.observations import (
    Acked,
    Applied,
    FinalState,
    LeaderElected,
    LeaseHolder,
    LeaseSample,
    LogSample,
    NodeFinal,
    NodeLog,
    Observation,
    ReadRequested,
    ReadServed,
    Restored,
)

D1, D2, D3 = b"\x01" * 32, b"\x02" * 32, b"\x03" * 32


def run(checker: Checker[Any], history: Sequence[Observation]) -> list[str]:
    return judge(history, [checker])


def e(index: int, term: int, data: bytes = b"") -> Entry:
    return Entry(index=index, term=term, data=data or f"x{index}".encode())


def elected(node: str, term: int, at: int = 0, log: tuple[Entry, ...] = ()) -> LeaderElected:
    return LeaderElected(at_us=at, node=node, term=term, snapshot_index=0, log=log)


def applied(node: str, entry: Entry, digest: bytes, at: int = 0) -> Applied:
    return Applied(at_us=at, node=node, entry=entry, digest=digest)


def test_election_safety() -> None:
    good = [elected("n1", 2), elected("n2", 3), elected("n1", 2)]
    assert run(ElectionSafety(), good) == []
    [line] = run(ElectionSafety(), [elected("n1", 2), elected("n2", 2, at=1_500_000)])
    assert "term 2 has two leaders: n1 and n2" in line
    assert line.startswith("t=1.500000s n2 [election-safety]")


def test_leader_lease_two_holders() -> None:
    a = LeaseHolder(node="n1", term=3, remaining=2)
    b = LeaseHolder(node="n2", term=4, remaining=8)
    assert run(LeaderLease(), [LeaseSample(at_us=0, holders=(a,), leaders=(("n1", 3),))]) == []
    [line] = run(LeaderLease(), [LeaseSample(at_us=5, holders=(a, b))])
    assert "two leases at once" in line and "n1 (term 3" in line


def test_leader_lease_newer_leader_while_lease_held() -> None:
    a = LeaseHolder(node="n1", term=3, remaining=1)
    older = LeaseSample(at_us=0, holders=(a,), leaders=(("n1", 3), ("n2", 2)))
    assert run(LeaderLease(), [older]) == []
    newer = LeaseSample(at_us=0, holders=(a,), leaders=(("n1", 3), ("n2", 4)))
    [line] = run(LeaderLease(), [newer])
    assert "n2 leads term 4 while n1 holds a lease of term 3" in line


def test_log_matching() -> None:
    same = (e(5, 1), e(6, 2), e(7, 2))
    good = LogSample(
        at_us=0,
        logs=(
            NodeLog(node="n1", snapshot_index=4, entries=same),
            NodeLog(node="n2", snapshot_index=4, entries=(e(5, 1), e(6, 2), e(7, 3, b"other"))),
        ),
    )
    assert run(LogMatching(), [good]) == []
    bad = LogSample(
        at_us=0,
        logs=(
            NodeLog(node="n1", snapshot_index=4, entries=same),
            NodeLog(node="n2", snapshot_index=4, entries=(e(5, 1, b"forked"), e(6, 2), e(7, 2))),
        ),
    )
    [line] = run(LogMatching(), [bad])
    assert "both hold term 2 at index 7 but differ at index 5" in line


def test_leader_completeness() -> None:
    history: list[Observation] = [applied("n1", e(1, 1), D1), applied("n1", e(2, 1), D2)]
    good = elected("n2", 2, log=(e(1, 1), e(2, 1), e(3, 2)))
    assert run(LeaderCompleteness(), [*history, good]) == []
    bad = elected("n3", 2, log=(e(1, 1),))
    [line] = run(LeaderCompleteness(), [*history, bad])
    assert "lacks 1 applied entries, first index 2 (term 1)" in line
    covered = LeaderElected(at_us=0, node="n3", term=2, snapshot_index=2, log=())
    assert run(LeaderCompleteness(), [*history, covered]) == []


def test_state_machine_safety_divergent_entry() -> None:
    history: list[Observation] = [
        Restored(at_us=0, node="n1", index=0, digest=D3),
        Restored(at_us=0, node="n2", index=0, digest=D3),
        applied("n1", e(1, 1, b"a"), D1),
        applied("n2", e(1, 1, b"a"), D1),
    ]
    assert run(StateMachineSafety(), history) == []
    lines = run(StateMachineSafety(), [*history, applied("n3", e(1, 2, b"b"), D2)])
    assert any("n1 applied (term 1, b'a') there" in line for line in lines)


def test_state_machine_safety_gap_and_bad_snapshot() -> None:
    history: list[Observation] = [
        Restored(at_us=0, node="n1", index=0, digest=D3),
        applied("n1", e(1, 1), D1),
        applied("n1", e(3, 1), D3),
    ]
    [gap] = run(StateMachineSafety(), history)
    assert "applied index 3, expected 2" in gap
    restored = Restored(at_us=0, node="n2", index=1, digest=D2)
    [snap] = run(StateMachineSafety(), [*history[:2], restored])
    assert "restored snapshot at index 1 has digest" in snap


def test_durability() -> None:
    history: list[Observation] = [
        applied("n1", e(1, 1, b"v1"), D1),
        Acked(at_us=0, node="n1", index=1, data=b"v1"),
        applied("n1", e(2, 1, b"v2"), D2),
    ]
    final = [NodeFinal(node=n, applied_index=2, digest=D2) for n in ("n1", "n2")]
    assert run(Durability(), [*history, FinalState(at_us=0, nodes=tuple(final))]) == []
    lagging = (final[0], NodeFinal(node="n2", applied_index=0, digest=D3))
    lines = run(Durability(), [*history, FinalState(at_us=0, nodes=lagging)])
    assert any("did not converge" in line for line in lines)
    assert any("acknowledged b'v1' at index 1" in line for line in lines)
    lost = [*history, Acked(at_us=0, node="n2", index=2, data=b"gone")]
    [line] = run(Durability(), [*lost, FinalState(at_us=0, nodes=tuple(final))])
    assert "history holds b'v2' there" in line


def test_read_index() -> None:
    history: list[Observation] = [
        applied("n1", e(1, 1), D1),
        applied("n1", e(2, 1), D2),
        ReadRequested(at_us=0, node="n2", context=7),
    ]
    ok = ReadServed(at_us=0, node="n2", context=7, index=2)
    assert run(ReadIndex(), [*history, ok]) == []
    stale = ReadServed(at_us=0, node="n2", context=7, index=1)
    [line] = run(ReadIndex(), [*history, stale])
    assert "index 2 was already applied when the read began" in line


def test_liveness() -> None:
    calm = PhaseStarted(at_us=30_000_000, bound_us=10_000_000)
    shown = GoalReached(at_us=31_000_000, node="n1")
    checker = Liveness()
    assert run(checker, [calm, shown, RunEnded(at_us=31_000_000)]) == []
    assert checker.elapsed_us == 1_000_000
    [late] = run(Liveness(), [calm, GoalReached(at_us=41_000_001, node="n1")])
    assert "liveness took 11.000s, bound 10.000s" in late
    [never] = run(Liveness(), [calm, RunEnded(at_us=40_000_000, detail="n1:down")])
    assert "no leader with a fresh write" in never and "n1:down" in never


def test_reports_are_capped() -> None:
    checker = ElectionSafety()
    run(checker, [elected("n1", t) for t in range(30)] + [elected("n2", t) for t in range(30)])
    report = checker.report()
    assert len(report) == 21 and report[-1].endswith("… and 10 more")
