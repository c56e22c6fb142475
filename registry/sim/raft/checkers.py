"""The Raft checkers: small judges of a history, one per guarantee.

Each is a ``registry.sim.checks.Checker`` fed ``registry.sim.raft.observations`` only,
never the cluster, so a synthetic bad history is enough to prove it can fail
(tests/sim/test_checkers.py).

=======================  ============================================================
checker                  rule (Raft paper §5 / design §1)
=======================  ============================================================
election-safety          at most one leader per term
leader-lease             at any instant at most one live node holds a leader lease,
                         and nobody leads a newer term while it does
log-matching             same (index, term) in two logs ⇒ identical logs up to there
leader-completeness      a new leader holds every entry applied anywhere so far
state-machine-safety     every node applies the same entries, contiguously; restored
                         snapshots carry the digest the others computed
durability               every acknowledged write is applied on every live member at
                         the end, and they all converged to one state
read-index               a read index covers every write applied before the read began
liveness                 in the calm phase, a leader and a fresh write within the bound
=======================  ============================================================
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

from registry.sim.checks.base import Checker, Suite, stamp
from registry.sim.checks.phases import BoundedPhase
from registry.sim.raft.observations import (
    Acked,
    Applied,
    FinalState,
    LeaderElected,
    LeaseSample,
    LogSample,
    Observation,
    ReadRequested,
    ReadServed,
    Restored,
)


def _short(data: bytes) -> str:
    return repr(data[:40]) + ("…" if len(data) > 40 else "")


class ElectionSafety(Checker[Observation]):
    name = "election-safety"
    handles = (LeaderElected,)

    def __init__(self) -> None:
        super().__init__()
        self.leaders: dict[int, str] = {}

    def feed(self, obs: Observation) -> None:
        assert isinstance(obs, LeaderElected)
        first = self.leaders.setdefault(obs.term, obs.node)
        if first != obs.node:
            self.violation(
                obs.at_us, obs.node, f"term {obs.term} has two leaders: {first} and {obs.node}"
            )


class LeaderLease(Checker[Observation]):
    name = "leader-lease"
    handles = (LeaseSample,)

    def feed(self, obs: Observation) -> None:
        """Two rules: no two leases at once, and nobody leads a newer term while a lease
        of an older term is held (a lease promises that nobody else can be elected)."""
        assert isinstance(obs, LeaseSample)
        if len(obs.holders) > 1:
            who = ", ".join(
                f"{h.node} (term {h.term}, {h.remaining} ticks left)" for h in obs.holders
            )
            self.violation(obs.at_us, obs.holders[-1].node, f"two leases at once: {who}")
        for h in obs.holders:
            for node, term in obs.leaders:
                if node != h.node and term > h.term:
                    self.violation(
                        obs.at_us,
                        node,
                        f"{node} leads term {term} while {h.node} holds a lease of term "
                        f"{h.term} ({h.remaining} ticks left)",
                    )


class LogMatching(Checker[Observation]):
    name = "log-matching"
    handles = (LogSample,)

    def feed(self, obs: Observation) -> None:
        assert isinstance(obs, LogSample)
        for a, b in combinations(obs.logs, 2):
            theirs = {e.index: e for e in b.entries}
            common = [(e, theirs[e.index]) for e in a.entries if e.index in theirs]
            anchor = next((x for x, y in reversed(common) if x.term == y.term), None)
            if anchor is None:
                continue
            for x, y in common:
                if x.index > anchor.index:
                    break
                if x != y:
                    self.violation(
                        obs.at_us,
                        a.node,
                        f"{a.node} and {b.node} both hold term {anchor.term} at index "
                        f"{anchor.index} but differ at index {x.index}: "
                        f"(term {x.term}, {_short(x.data)}) vs (term {y.term}, {_short(y.data)})",
                    )
                    break


class LeaderCompleteness(Checker[Observation]):
    name = "leader-completeness"
    handles = (Applied, LeaderElected)

    def __init__(self) -> None:
        super().__init__()
        self.applied_terms: dict[int, int] = {}

    def feed(self, obs: Observation) -> None:
        if isinstance(obs, Applied):
            self.applied_terms.setdefault(obs.entry.index, obs.entry.term)
            return
        assert isinstance(obs, LeaderElected)
        held = {e.index: e.term for e in obs.log}
        missing = [
            (index, term)
            for index, term in self.applied_terms.items()
            if index > obs.snapshot_index and held.get(index) != term
        ]
        if missing:
            index, term = min(missing)
            self.violation(
                obs.at_us,
                obs.node,
                f"new leader of term {obs.term} lacks {len(missing)} applied entries, first "
                f"index {index} (term {term}); it holds term {held.get(index)} there",
            )


class StateMachineSafety(Checker[Observation]):
    name = "state-machine-safety"
    handles = (Applied, Restored)

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[int, tuple[int, bytes, str]] = {}
        """index → (term, data, first node that applied it)"""
        self.digests: dict[int, tuple[bytes, str]] = {}
        self.next_index: dict[str, int] = {}

    def feed(self, obs: Observation) -> None:
        if isinstance(obs, Restored):
            self.next_index[obs.node] = obs.index + 1
            if obs.index > 0:
                self._digest(obs.at_us, obs.node, obs.index, obs.digest, "restored snapshot")
            return
        assert isinstance(obs, Applied)
        entry = obs.entry
        expected = self.next_index.get(obs.node, entry.index)
        if entry.index != expected:
            self.violation(obs.at_us, obs.node, f"applied index {entry.index}, expected {expected}")
        self.next_index[obs.node] = entry.index + 1
        term, data, first = self.entries.setdefault(entry.index, (entry.term, entry.data, obs.node))
        if (term, data) != (entry.term, entry.data):
            self.violation(
                obs.at_us,
                obs.node,
                f"applied (term {entry.term}, {_short(entry.data)}) at index {entry.index}; "
                f"{first} applied (term {term}, {_short(data)}) there",
            )
        self._digest(obs.at_us, obs.node, entry.index, obs.digest, "applied state")

    def _digest(self, at_us: int, node: str, index: int, digest: bytes, what: str) -> None:
        known, first = self.digests.setdefault(index, (digest, node))
        if known != digest:
            self.violation(
                at_us,
                node,
                f"{what} at index {index} has digest {digest.hex()[:12]}, "
                f"{first} had {known.hex()[:12]}",
            )


class Durability(Checker[Observation]):
    name = "durability"
    handles = (Acked, Applied, FinalState)

    def __init__(self) -> None:
        super().__init__()
        self.acks: list[Acked] = []
        self.data_at: dict[int, bytes] = {}
        self.digest_at: dict[int, bytes] = {}

    def feed(self, obs: Observation) -> None:
        if isinstance(obs, Acked):
            self.acks.append(obs)
        elif isinstance(obs, Applied):
            self.data_at.setdefault(obs.entry.index, obs.entry.data)
            self.digest_at.setdefault(obs.entry.index, obs.digest)
        else:
            assert isinstance(obs, FinalState)
            self._final(obs)

    def _final(self, obs: FinalState) -> None:
        if not obs.nodes:
            self.violation(obs.at_us, "", "no live member at the end of the run")
            return
        states = {(n.applied_index, n.digest) for n in obs.nodes}
        if len(states) > 1:
            shown = ", ".join(f"{n.node}@{n.applied_index}:{n.digest.hex()[:8]}" for n in obs.nodes)
            self.violation(obs.at_us, "", f"live members did not converge: {shown}")
        for n in obs.nodes:
            known = self.digest_at.get(n.applied_index)
            if n.applied_index and known is not None and known != n.digest:
                self.violation(
                    obs.at_us, n.node, f"final state at {n.applied_index} is not the history's"
                )
        lowest = min(obs.nodes, key=lambda n: n.applied_index)
        for ack in self.acks:
            if ack.index > lowest.applied_index:
                self.violation(
                    obs.at_us,
                    lowest.node,
                    f"acknowledged {_short(ack.data)} at index {ack.index} (by {ack.node} at "
                    f"{stamp(ack.at_us)}) but applied only up to {lowest.applied_index}",
                )
            elif self.data_at.get(ack.index) != ack.data:
                self.violation(
                    obs.at_us,
                    ack.node,
                    f"acknowledged {_short(ack.data)} at index {ack.index} (at {stamp(ack.at_us)}) "
                    f"but the history holds {_short(self.data_at.get(ack.index, b''))} there",
                )


class ReadIndex(Checker[Observation]):
    name = "read-index"
    handles = (Applied, ReadRequested, ReadServed)

    def __init__(self) -> None:
        super().__init__()
        self.max_applied = 0
        self.floors: dict[int, int] = {}

    def feed(self, obs: Observation) -> None:
        if isinstance(obs, Applied):
            self.max_applied = max(self.max_applied, obs.entry.index)
        elif isinstance(obs, ReadRequested):
            self.floors[obs.context] = self.max_applied
        else:
            assert isinstance(obs, ReadServed)
            floor = self.floors.get(obs.context, 0)
            if obs.index < floor:
                self.violation(
                    obs.at_us,
                    obs.node,
                    f"read {obs.context} got read index {obs.index}, but index {floor} was "
                    f"already applied when the read began (stale read)",
                )


class Liveness(BoundedPhase):
    name = "liveness"

    def late(self, elapsed_us: int, bound_us: int) -> str:
        return f"liveness took {elapsed_us / 1e6:.3f}s, bound {bound_us / 1e6:.3f}s"

    def missed(self, waited_us: int, bound_us: int, detail: str) -> str:
        return (
            f"no leader with a fresh write on every member within {bound_us / 1e6:.3f}s "
            f"of calm: {detail}"
        )


def default_checkers() -> list[Checker[Any]]:
    return [
        ElectionSafety(),
        LeaderLease(),
        LogMatching(),
        LeaderCompleteness(),
        StateMachineSafety(),
        Durability(),
        ReadIndex(),
        Liveness(),
    ]


class CheckerSuite(Suite):
    """The Raft simulation's checkers (all of them unless told otherwise)."""

    def __init__(self, checkers: list[Checker[Any]] | None = None) -> None:
        super().__init__(checkers if checkers is not None else default_checkers())
