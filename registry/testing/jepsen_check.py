"""The checker: reads one ledger file (what the workers wrote, what the test did) and
judges every guarantee. A pure function of the file, so a run can be re-checked later.

An activation's life is ``[called_t, end]``: from ``on_start`` to the last evidence that
it was still there — its ``on_stop``, or its last heartbeat attempt (accepted or not).

- **G1 single activation.** Two activations of one name overlap when one starts before
  the other's end. Two cases around a frozen process are told apart, provided every
  write of the older activation after the newer one's start was refused by the fence (no
  accepted claim or heartbeat after it) and the older one ended within ``resume_grace``
  of its ``SIGCONT``: the newer activation started *while* the older one's process was
  SIGSTOPped (``paused_overlaps``), or within ``resume_grace`` after its SIGCONT, before
  the resumed process had fenced (``resume_overlaps``). ``Report.ok`` counts both as
  violations unless the check was asked to excuse them (``excuse_pauses``: while workers
  run inside the paused node process they resume with it and cannot stop earlier).
  Every other overlap is a duplicate. A pause without a recorded resume is a checker
  error (``CheckerError``): the history cannot be judged.
- **Fencing.** A *stale write* is a write accepted from an activation after an activation
  that started later had already written its claim (Kleppmann's definition: the store had
  seen the newer token). ``stale_writes_accepted`` counts those, from the writer's own
  check at write time (``stale_accepted``) plus this checker's independent pass over the
  activations (accepted heartbeat after a newer claim). Rejected writes are counted too.
- **G2 tokens.** Ordered by start, each activation's token is greater than every earlier
  one's; only an in-place crash restart (same process, reason ``restart``) may repeat it.
- **G3 durability.** Every acknowledged registration is in the final listing, unless an
  unregister of it was sent (acknowledged: it must be gone; unknown outcome: either).
- **Calls.** Every call a worker answered was answered by an activation of that name,
  node and token that was live at some instant between the call's send and its answer.
- **Election safety.** At most one leader per term, over the nodes' ``/status`` samples.
- **G4 failover.** For each fault that takes nodes away (split, isolate, isolate-leader,
  kill, pause): every name running on them at injection, time to its next activation.
- **G5 heal.** Time from heal to convergence (every name at its owner, running once);
  and state continuity: a ``handoff`` start received exactly the state its predecessor
  gave away.
- **G6 minority.** Each probe of a node without quorum: the write was refused with
  ``UNAVAILABLE`` and a message saying "no quorum", and ``/status`` answered. A probe
  whose node had not lost its leader by the end of the cut is skipped (no verdict);
  more than a quarter skipped is a violation.
"""

from __future__ import annotations

import itertools
import json
import math
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from registry.testing.history import SKIPPED
from registry.testing.ledger import connect

FAILOVER_KINDS = ("split", "isolate", "isolate-leader", "kill", "pause")
PARTITION_KINDS = ("split", "isolate", "isolate-leader", "bridge", "one-way", "flap")
"""Faults whose heal is a network heal (G5); a restart's convergence also waits for the
process to boot."""


class CheckerError(ValueError):
    """The history is incomplete or inconsistent: it cannot be judged."""


HOST_DIED_S = 1.0
"""Heartbeats (every 50 ms) silent this long before the node was killed: the activation's
worker host had died already (hosts are never paused; only node processes are)."""
RESUME_GRACE_S = 1.0
"""How long after ``SIGCONT`` a resumed node may take to fence its old activations."""


@dataclass(slots=True)
class Act:
    id: str
    name: str
    node: str
    pid: int
    token: int
    reason: str
    called_t: float
    claim_t: float | None
    claim_ok: bool
    last_ok_t: float | None
    last_try_t: float | None
    stop_t: float | None
    stop_cause: str | None
    state_in: str | None
    state_out: str | None
    killed_t: float | None = None
    """When its node's process got SIGKILL (no ``on_stop`` then): it ran until then —
    unless its heartbeats had stopped ``HOST_DIED_S`` before: its worker host died first
    (killed by the node's fencing, or by its own watchdog while the node was paused), and
    it ended with its last heartbeat."""

    def last_accepted_write(self) -> float | None:
        """When the fence last accepted a write of this activation (claim or beat)."""
        times = [self.last_ok_t, self.claim_t if self.claim_ok else None]
        return max((t for t in times if t is not None), default=None)

    @property
    def end(self) -> float:
        times = [self.called_t, self.claim_t, self.stop_t, self.last_try_t, self.last_ok_t]
        heard = max(t for t in times if t is not None)
        died_with_node = self.killed_t is not None and self.killed_t - heard < HOST_DIED_S
        if self.stop_t is None and self.killed_t is not None and died_with_node:
            return max(heard, self.killed_t)
        return heard


FAILOVER_P99_S = 3.0
"""G4 (DESIGN §5, the ``lan`` target): a lost node's names run elsewhere within this."""
HEAL_P99_S = 5.0
"""G5: after a partition heals the cluster converges (every name once, at its owner)
within this. (Restarts are reported too, but their convergence includes booting.)"""


@dataclass(slots=True)
class Report:
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    faults: int = 0
    operations: int = 0
    operations_ok: int = 0
    names: int = 0
    activations: int = 0
    duplicates: int = 0
    paused_overlaps: int = 0
    """Overlaps whose newer activation started while the older one was frozen (see the
    module docstring)."""
    resume_overlaps: int = 0
    """Overlaps whose newer activation started just after the older one's SIGCONT."""
    paused_overlaps_excused: bool = False
    """Whether ``ok`` accepts ``paused_overlaps`` and ``resume_overlaps``
    (``check(excuse_pauses=True)``)."""
    elections: int = 0
    """Leader terms seen (from the nodes' /status samples)."""
    split_brains: int = 0
    """Terms in which two different nodes said they were the leader (election safety)."""
    stale_writes_accepted: int = 0
    rejected_writes: int = 0
    token_regressions: int = 0
    lost_registrations: int = 0
    resurrected: int = 0
    """Names in the final listing although their unregister was acknowledged."""
    calls_answered: int = 0
    calls_unexplained: int = 0
    """Calls answered by no activation live at the time (wrong node, token or time)."""
    failover_samples: int = 0
    failover_missing: int = 0
    failover_p50_s: float | None = None
    failover_p99_s: float | None = None
    failover_max_s: float | None = None
    failover_slowest: list[str] = field(default_factory=list)
    """The three faults whose names took longest to run again, slowest first: a
    percentile over the bound says which fault to replay."""
    heal_samples: int = 0
    heal_unconverged: int = 0
    heal_converge_p50_s: float | None = None
    heal_converge_p99_s: float | None = None
    heal_converge_max_s: float | None = None
    heal_partition_p99_s: float | None = None
    """Heal → convergence after network partitions only (``PARTITION_KINDS``)."""
    handoffs: int = 0
    state_continuity_violations: int = 0
    handoff_state_lost: int = 0
    """Informational: a holder answered ``begin_handoff`` with a state and stopped, but
    the next activation did not start with that state (e.g. a failover overtook the
    handoff). Not a violation by itself: only ``handoff`` starts must carry the state."""
    collateral_fences: int = 0
    """Informational: activations fenced (``quorum_lost``) on nodes that a split or
    isolation did not cut off."""
    minority_probes: int = 0
    minority_violations: int = 0
    minority_skipped: int = 0
    """Probes whose node still named a leader when the cut was about to heal (a follower
    whose leader is cut off with it loses it only after that leader steps down and its
    own election timer runs): nothing observed, so no verdict. More than a quarter of
    the probes skipped is a violation: minorities that keep a leader."""
    register_to_running_p99_s: float | None = None
    examples: list[str] = field(default_factory=list)
    """A few concrete violations, to start debugging from."""

    @property
    def ok(self) -> bool:
        bad = (
            self.duplicates,
            self.stale_writes_accepted,
            self.token_regressions,
            self.lost_registrations,
            self.failover_missing,
            self.heal_unconverged,
            self.state_continuity_violations,
            self.minority_violations,
            self.split_brains,
            self.resurrected,
            self.calls_unexplained,
            0 if self.paused_overlaps_excused else self.paused_overlaps + self.resume_overlaps,
        )
        return not any(bad)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}

    def target_misses(self) -> list[str]:
        """The design's timing targets this run missed (``FAILOVER_P99_S``,
        ``HEAL_P99_S``), each as a sentence; no samples is not a miss."""
        misses = []
        failover, heal = self.failover_p99_s, self.heal_partition_p99_s
        if failover is not None and failover > FAILOVER_P99_S:
            misses.append(f"failover p99 {failover:.3f} s is over the {FAILOVER_P99_S:g} s target")
        if heal is not None and heal > HEAL_P99_S:
            misses.append(f"heal p99 {heal:.3f} s (partitions) is over the {HEAL_P99_S:g} s target")
        return misses


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in [0, 100]); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def load_activations(conn: sqlite3.Connection) -> dict[str, list[Act]]:
    rows = conn.execute(
        "SELECT id, name, node, pid, token, reason, called_t, claim_t, claim_ok, last_ok_t, "
        "last_try_t, stop_t, stop_cause, state_in, state_out FROM activations "
        "ORDER BY called_t"
    ).fetchall()
    by_name: dict[str, list[Act]] = defaultdict(list)
    for r in rows:
        act = Act(
            id=r[0],
            name=r[1],
            node=r[2],
            pid=r[3],
            token=r[4],
            reason=r[5],
            called_t=r[6],
            claim_t=r[7],
            claim_ok=bool(r[8]),
            last_ok_t=r[9],
            last_try_t=r[10],
            stop_t=r[11],
            stop_cause=r[12],
            state_in=r[13],
            state_out=r[14],
        )
        by_name[act.name].append(act)
    return by_name


def check(
    path: Path, *, resume_grace: float = RESUME_GRACE_S, excuse_pauses: bool = False
) -> Report:
    """Judge the ledger at ``path``; raises ``CheckerError`` if it cannot be judged."""
    conn = connect(path)
    try:
        return _check(conn, resume_grace, excuse_pauses)
    finally:
        conn.close()


def _check(conn: sqlite3.Connection, resume_grace: float, excuse_pauses: bool) -> Report:
    rep = Report(paused_overlaps_excused=excuse_pauses)
    acts = load_activations(conn)
    rep.names = len(acts)
    rep.activations = sum(len(v) for v in acts.values())
    kills = dict(conn.execute("SELECT pid, MAX(t) FROM kills GROUP BY pid").fetchall())
    for history in acts.values():
        for a in history:
            a.killed_t = kills.get(a.pid)
    pauses: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for pid, t0, t1 in conn.execute("SELECT pid, t0, t1 FROM pauses"):
        if t1 is None:
            raise CheckerError(f"pid {pid} was SIGSTOPped at {t0:.3f} with no recorded SIGCONT")
        pauses[pid].append((t0, t1))
    _g1(rep, acts, pauses, resume_grace)
    _election_safety(rep, conn)
    _fencing(rep, conn, acts)
    _g2(rep, acts)
    _g3(rep, conn, acts)
    _calls(rep, conn, acts)
    _g4(rep, conn, acts)
    _g5(rep, conn, acts)
    _g6(rep, conn)
    _state_lost(rep, acts)
    _collateral(rep, conn, acts)
    for kind, count in conn.execute("SELECT kind, SUM(count) FROM faults GROUP BY kind"):
        rep.faults_by_kind[kind] = int(count)
    rep.faults = sum(rep.faults_by_kind.values())
    ops = conn.execute("SELECT COUNT(*), COALESCE(SUM(ok), 0) FROM ops").fetchone()
    rep.operations, rep.operations_ok = int(ops[0]), int(ops[1])
    return rep


def _example(rep: Report, text: str) -> None:
    if len(rep.examples) < 20:
        rep.examples.append(text)


def _describe(a: Act) -> str:
    return f"{a.name}#{a.token}@{a.node}(pid {a.pid}, {a.called_t:.3f}..{a.end:.3f})"


def _g1(
    rep: Report,
    acts: dict[str, list[Act]],
    pauses: dict[int, list[tuple[float, float]]],
    resume_grace: float,
) -> None:
    for history in acts.values():
        for j, b in enumerate(history):
            for a in history[:j]:
                if a.end <= b.called_t:
                    continue
                wrote = a.last_accepted_write()
                fenced = wrote is None or wrote <= b.called_t
                around = [(t0, t1) for t0, t1 in pauses[a.pid] if a.end <= t1 + resume_grace]
                if fenced and any(t0 <= b.called_t <= t1 for t0, t1 in around):
                    rep.paused_overlaps += 1
                elif fenced and any(t1 < b.called_t <= t1 + resume_grace for _, t1 in around):
                    rep.resume_overlaps += 1
                    _example(
                        rep, f"G1 overlap right after SIGCONT: {_describe(a)} and {_describe(b)}"
                    )
                else:
                    rep.duplicates += 1
                    overlap = a.end - b.called_t
                    _example(
                        rep, f"G1 duplicate ({overlap:.3f} s): {_describe(a)} and {_describe(b)}"
                    )


def _election_safety(rep: Report, conn: sqlite3.Connection) -> None:
    """At most one leader per term, over every /status sample of every node."""
    leaders: dict[int, set[str]] = defaultdict(set)
    for term, leader in conn.execute("SELECT DISTINCT term, leader FROM leaders"):
        leaders[int(term)].add(str(leader))
    rep.elections = len(leaders)
    for term, who in sorted(leaders.items()):
        if len(who) > 1:
            rep.split_brains += 1
            _example(rep, f"election safety: term {term} had leaders {sorted(who)}")


def _fencing(rep: Report, conn: sqlite3.Connection, acts: dict[str, list[Act]]) -> None:
    rep.rejected_writes = conn.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
    online = conn.execute("SELECT activation, name, token, t FROM stale_accepted").fetchall()
    flagged = {row[0] for row in online}
    for act_id, name, token, t in online[:5]:
        _example(rep, f"stale write accepted: {name}#{token} (activation {act_id}) at {t:.3f}")
    offline = 0
    for history in acts.values():
        for a in history:
            if a.last_ok_t is None or a.id in flagged:
                continue
            if any(
                b.claim_ok
                and b.claim_t is not None
                and b.claim_t > (a.claim_t or a.called_t)
                and b.claim_t < a.last_ok_t
                and b.id != a.id
                for b in history
            ):
                offline += 1
                _example(rep, f"stale write accepted (offline check): {_describe(a)}")
    rep.stale_writes_accepted = len(online) + offline


def _g2(rep: Report, acts: dict[str, list[Act]]) -> None:
    for history in acts.values():
        highest: Act | None = None
        for b in history:
            if highest is not None:
                same_instance = (
                    b.token == highest.token and b.pid == highest.pid and b.reason == "restart"
                )
                if b.token < highest.token or (b.token == highest.token and not same_instance):
                    rep.token_regressions += 1
                    _example(rep, f"G2 token regression: {_describe(highest)} then {_describe(b)}")
            if highest is None or b.token > highest.token:
                highest = b


def _g3(rep: Report, conn: sqlite3.Connection, acts: dict[str, list[Act]]) -> None:
    final = {row[0] for row in conn.execute("SELECT name FROM final")}
    unregs = dict(conn.execute("SELECT name, acked FROM unregs").fetchall())
    lost = [
        name
        for (name,) in conn.execute("SELECT name FROM acks ORDER BY name")
        if name not in final and name not in unregs
    ]
    back = sorted(name for name, acked in unregs.items() if acked and name in final)
    rep.resurrected = len(back)
    for name in back[:5]:
        _example(rep, f"G3 {name} is listed although its unregister was acknowledged")
    rep.lost_registrations = len(lost)
    for name in lost[:5]:
        _example(rep, f"G3 acknowledged registration lost: {name}")
    latencies = []
    for name, t_sent in conn.execute("SELECT name, t_sent FROM acks"):
        starts = [a.called_t for a in acts.get(name, ()) if a.called_t >= t_sent]
        if starts:
            latencies.append(min(starts) - t_sent)
    rep.register_to_running_p99_s = percentile(latencies, 99)


def _calls(rep: Report, conn: sqlite3.Connection, acts: dict[str, list[Act]]) -> None:
    for name, node, token, t_sent, t_answer in conn.execute(
        "SELECT name, node, token, t_sent, t_answer FROM calls"
    ):
        rep.calls_answered += 1
        if not any(
            a.node == node and a.token == token and a.called_t <= t_answer and t_sent <= a.end
            for a in acts.get(name, ())
        ):
            rep.calls_unexplained += 1
            _example(rep, f"call to {name} answered by {node}#{token}, live at no time then")


def _g4(rep: Report, conn: sqlite3.Connection, acts: dict[str, list[Act]]) -> None:
    samples = []
    unregistered = {row[0] for row in conn.execute("SELECT name FROM unregs")}
    marks = ",".join("?" * len(FAILOVER_KINDS))
    faults = conn.execute(
        f"SELECT id, kind, targets, t_inject FROM faults WHERE kind IN ({marks})", FAILOVER_KINDS
    ).fetchall()
    by_fault: list[tuple[float, int, str]] = []
    for fid, kind, targets_json, t0 in faults:
        targets = set(json.loads(targets_json))
        mine: list[float] = []
        for name, history in acts.items():
            if not any(a.node in targets and a.called_t < t0 <= a.end for a in history):
                continue
            later = [a.called_t for a in history if a.called_t > t0]
            if later:
                mine.append(min(later) - t0)
            elif name in unregistered:
                continue  # the workload unregistered it: no failover owed
            else:
                rep.failover_missing += 1
                _example(rep, f"G4 {name} never ran again after fault {fid} ({kind})")
        samples += mine
        if mine:
            where = f"fault {fid} ({kind} {sorted(targets)})"
            by_fault.append((max(mine), fid, f"{where}: max {max(mine):.3f} s, {len(mine)} names"))
    rep.failover_slowest = [text for *_, text in sorted(by_fault, reverse=True)[:3]]
    rep.failover_samples = len(samples)
    rep.failover_p50_s = percentile(samples, 50)
    rep.failover_p99_s = percentile(samples, 99)
    rep.failover_max_s = percentile(samples, 100)


def _g5(rep: Report, conn: sqlite3.Connection, acts: dict[str, list[Act]]) -> None:
    samples = [
        max(0.0, t_conv - t_heal)
        for t_heal, t_conv in conn.execute(
            "SELECT t_heal, t_converged FROM faults WHERE t_converged >= 0"
        )
    ]
    rep.heal_unconverged = conn.execute(
        "SELECT COUNT(*) FROM faults WHERE t_converged = -1"
    ).fetchone()[0]
    for (fid,) in conn.execute("SELECT id FROM faults WHERE t_converged = -1 LIMIT 5"):
        _example(rep, f"G5 no convergence after fault {fid}")
    marks = ",".join("?" * len(PARTITION_KINDS))
    partition_heals = [
        max(0.0, t_conv - t_heal)
        for t_heal, t_conv in conn.execute(
            f"SELECT t_heal, t_converged FROM faults WHERE t_converged >= 0 AND kind IN ({marks})",
            PARTITION_KINDS,
        )
    ]
    rep.heal_partition_p99_s = percentile(partition_heals, 99)
    rep.heal_samples = len(samples)
    rep.heal_converge_p50_s = percentile(samples, 50)
    rep.heal_converge_p99_s = percentile(samples, 99)
    rep.heal_converge_max_s = percentile(samples, 100)
    for history in acts.values():
        for j, b in enumerate(history):
            if b.reason != "handoff":
                continue
            rep.handoffs += 1
            before = [a for a in history[:j] if a.token < b.token]
            # The latest of the highest token: a host restart reruns a token (RESTART).
            prev = max(before, key=lambda a: (a.token, a.called_t)) if before else None
            if prev is None or b.state_in is None or b.state_in != prev.state_out:
                rep.state_continuity_violations += 1
                got = b.state_in
                gave = prev.state_out if prev else None
                _example(rep, f"G5 state: {_describe(b)} got {got!r}, predecessor gave {gave!r}")


def _state_lost(rep: Report, acts: dict[str, list[Act]]) -> None:
    for history in acts.values():
        by_token = sorted(history, key=lambda a: a.token)
        for a, b in itertools.pairwise(by_token):
            gave = a.stop_cause == "handoff" and a.state_out is not None and b.token > a.token
            if gave and (b.reason != "handoff" or b.state_in != a.state_out):
                rep.handoff_state_lost += 1


def _collateral(rep: Report, conn: sqlite3.Connection, acts: dict[str, list[Act]]) -> None:
    faults = conn.execute(
        "SELECT targets, t_inject, t_heal FROM faults WHERE t_heal IS NOT NULL "
        "AND kind IN ('split', 'isolate', 'isolate-leader')"
    ).fetchall()
    windows = [(set(json.loads(t)), t0, t1 + 1.0) for t, t0, t1 in faults]
    for history in acts.values():
        for a in history:
            if a.stop_cause != "quorum_lost" or a.stop_t is None:
                continue
            if any(t0 <= a.stop_t <= t1 and a.node not in tg for tg, t0, t1 in windows):
                rep.collateral_fences += 1


def _g6(rep: Report, conn: sqlite3.Connection) -> None:
    for node, code, message, status_ok in conn.execute(
        "SELECT node, code, message, status_ok FROM minority"
    ):
        rep.minority_probes += 1
        if code == SKIPPED:
            rep.minority_skipped += 1
            continue
        # Right after the cut, a minority node may still count the others as recently
        # heard; it then says "no leader yet" — also true, and also UNAVAILABLE.
        says_why = "no quorum" in message or "no leader" in message
        if code != "UNAVAILABLE" or not says_why or not status_ok:
            rep.minority_violations += 1
            _example(rep, f"G6 {node}: write answered {code} {message!r}, /status ok={status_ok}")
    if rep.minority_skipped * 4 > rep.minority_probes:
        rep.minority_violations += 1
        _example(
            rep,
            f"G6: {rep.minority_skipped} of {rep.minority_probes} probed minority nodes still "
            "named a leader when their cut was about to heal",
        )
