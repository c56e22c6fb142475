"""The checker: reads one ledger file (what the workers wrote, what the test did) and
judges every guarantee. A pure function of the file, so a run can be re-checked later.

An activation's life is ``[called_t, end]``: from ``on_start`` to the last evidence that
it was still there — its ``on_stop``, or its last heartbeat attempt (accepted or not).

- **G1 single activation.** Two activations of one name overlap when one starts before
  the other's end. The one tolerated case is a paused process (``SIGSTOP``): if the older
  activation's process was paused before the newer one started and the older one ended
  within ``resume_grace`` of its ``SIGCONT``, the overlap is counted in
  ``paused_overlaps``, not ``duplicates`` — provided the fence held (next point). Every
  other overlap is a duplicate.
- **Fencing.** A *stale write* is a write accepted from an activation after an activation
  that started later had already written its claim (Kleppmann's definition: the store had
  seen the newer token). ``stale_writes_accepted`` counts those, from the writer's own
  check at write time (``stale_accepted``) plus this checker's independent pass over the
  activations (accepted heartbeat after a newer claim). Rejected writes are counted too.
- **G2 tokens.** Ordered by start, each activation's token is greater than every earlier
  one's; only an in-place crash restart (same process, reason ``restart``) may repeat it.
- **G3 durability.** Every acknowledged registration is in the final listing.
- **G4 failover.** For each fault that takes nodes away (split, isolate, isolate-leader,
  kill, pause): every name running on them at injection, time to its next activation.
- **G5 heal.** Time from heal to convergence (every name at its owner, running once);
  and state continuity: a ``handoff`` start received exactly the state its predecessor
  gave away.
- **G6 minority.** Each probe of a node without quorum: the write was refused with
  ``UNAVAILABLE`` and a message saying "no quorum", and ``/status`` answered.
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

from registry.testing.ledger import connect

FAILOVER_KINDS = ("split", "isolate", "isolate-leader", "kill", "pause")
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

    @property
    def end(self) -> float:
        times = [self.called_t, self.claim_t, self.stop_t, self.last_try_t, self.last_ok_t]
        heard = max(t for t in times if t is not None)
        died_with_node = self.killed_t is not None and self.killed_t - heard < HOST_DIED_S
        if self.stop_t is None and self.killed_t is not None and died_with_node:
            return max(heard, self.killed_t)
        return heard


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
    stale_writes_accepted: int = 0
    rejected_writes: int = 0
    token_regressions: int = 0
    lost_registrations: int = 0
    failover_samples: int = 0
    failover_missing: int = 0
    failover_p50_s: float | None = None
    failover_p99_s: float | None = None
    failover_max_s: float | None = None
    heal_samples: int = 0
    heal_unconverged: int = 0
    heal_converge_p50_s: float | None = None
    heal_converge_p99_s: float | None = None
    heal_converge_max_s: float | None = None
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
        )
        return not any(bad)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


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


def check(path: Path, *, resume_grace: float = RESUME_GRACE_S) -> Report:
    conn = connect(path)
    try:
        return _check(conn, resume_grace)
    finally:
        conn.close()


def _check(conn: sqlite3.Connection, resume_grace: float) -> Report:
    rep = Report()
    acts = load_activations(conn)
    rep.names = len(acts)
    rep.activations = sum(len(v) for v in acts.values())
    kills = dict(conn.execute("SELECT pid, MAX(t) FROM kills GROUP BY pid").fetchall())
    for history in acts.values():
        for a in history:
            a.killed_t = kills.get(a.pid)
    pauses: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for pid, t0, t1 in conn.execute("SELECT pid, t0, t1 FROM pauses"):
        pauses[pid].append((t0, t1 if t1 is not None else math.inf))
    _g1(rep, acts, pauses, resume_grace)
    _fencing(rep, conn, acts)
    _g2(rep, acts)
    _g3(rep, conn, acts)
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
                excused = any(
                    t0 < b.called_t and a.end <= t1 + resume_grace for t0, t1 in pauses[a.pid]
                )
                if excused:
                    rep.paused_overlaps += 1
                else:
                    rep.duplicates += 1
                    overlap = a.end - b.called_t
                    _example(
                        rep, f"G1 duplicate ({overlap:.3f} s): {_describe(a)} and {_describe(b)}"
                    )


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
    lost = [
        name for (name,) in conn.execute("SELECT name FROM acks ORDER BY name") if name not in final
    ]
    rep.lost_registrations = len(lost)
    for name in lost[:5]:
        _example(rep, f"G3 acknowledged registration lost: {name}")
    latencies = []
    for name, t_sent in conn.execute("SELECT name, t_sent FROM acks"):
        starts = [a.called_t for a in acts.get(name, ()) if a.called_t >= t_sent]
        if starts:
            latencies.append(min(starts) - t_sent)
    rep.register_to_running_p99_s = percentile(latencies, 99)


def _g4(rep: Report, conn: sqlite3.Connection, acts: dict[str, list[Act]]) -> None:
    samples = []
    marks = ",".join("?" * len(FAILOVER_KINDS))
    faults = conn.execute(
        f"SELECT id, kind, targets, t_inject FROM faults WHERE kind IN ({marks})", FAILOVER_KINDS
    ).fetchall()
    for fid, kind, targets_json, t0 in faults:
        targets = set(json.loads(targets_json))
        for name, history in acts.items():
            if not any(a.node in targets and a.called_t < t0 <= a.end for a in history):
                continue
            later = [a.called_t for a in history if a.called_t > t0]
            if later:
                samples.append(min(later) - t0)
            else:
                rep.failover_missing += 1
                _example(rep, f"G4 {name} never ran again after fault {fid} ({kind})")
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
            prev = max(before, key=lambda a: a.token) if before else None
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
        if code != "UNAVAILABLE" or "no quorum" not in message or not status_ok:
            rep.minority_violations += 1
            _example(rep, f"G6 {node}: write answered {code} {message!r}, /status ok={status_ok}")
