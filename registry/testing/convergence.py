"""Is the cluster healed? Every node agrees, every name runs at its owner, exactly once.

``snapshot(cluster, ledger)`` takes one look and says what is still missing, so a wait
can both poll it and report the last thing it saw when its deadline passes:

1. every running node holds a lease and follows the same leader, whose view has every
   running node up;
2. the leader's listing: every name has a holder, and the holder is the name's owner by
   placement over that view (recomputed here with ``registry.core.placement``, the same
   pure function the nodes use);
3. the ledger: each name has exactly one live activation in a live process, on its holder,
   with the listed token, and its claim on the fenced table was accepted.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from registry.core.commands import NameSpec
from registry.core.placement import Candidate, Placement
from registry.testing.cluster import NetnsCluster
from registry.testing.ledger import connect

Priority = tuple[tuple[str, ...], ...]


@dataclass(slots=True)
class Snapshot:
    problems: list[str] = field(default_factory=list)
    names: dict[str, tuple[str, int]] = field(default_factory=dict)
    """name → (holder, token) from the leader's listing."""
    leader: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        return "; ".join(self.problems[:5]) or "converged"


def owners(
    names: Iterable[str], up: Collection[str], priorities: dict[str, Priority], kind: str
) -> dict[str, str | None]:
    """Each name's placement owner over the members ``up`` (all of them eligible)."""
    members = {n: Candidate(node=n, roles=frozenset(), kinds=frozenset(), up=True) for n in up}
    placement = Placement()
    return {
        name: placement.owner(
            NameSpec(name=name, kind=kind, priority=priorities.get(name)), members, 1
        )
        for name in names
    }


SILENT_AFTER_S = 2.0
"""An activation whose ledger heartbeats stopped this long ago is not running: its worker
host was killed (the node's fencing SIGKILL, or the host's watchdog while the node was
paused), so ``on_stop`` never wrote its end, though the node's pid lives on."""


def live_activations(ledger: Path, pids: Collection[int]) -> dict[str, list[tuple[str, int, bool]]]:
    """name → [(node, token, claim accepted)] for activations not stopped, in ``pids``,
    still heartbeating."""
    conn = connect(ledger)
    try:
        rows = conn.execute(
            "SELECT name, node, token, claim_ok, pid, COALESCE(last_try_t, called_t), host_pid "
            "FROM activations WHERE stop_t IS NULL"
        ).fetchall()
    finally:
        conn.close()
    silent = time.monotonic() - SILENT_AFTER_S  # one machine: the ledger's clock
    out: dict[str, list[tuple[str, int, bool]]] = {}
    for name, node, token, claim_ok, pid, heard, host_pid in rows:
        if pid in pids and heard >= silent and _alive(host_pid):
            out.setdefault(name, []).append((node, token, bool(claim_ok)))
    return out


def _alive(pid: int | None) -> bool:
    """Whether the worker host process ``pid`` still runs (namespaces share the pid space):
    a host killed by its node's fencing ends its activations at once, though its last
    heartbeat is recent. A zombie (dead, not yet reaped) does not count."""
    if pid is None:
        return True  # a ledger written before hosts recorded their pid
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def snapshot(
    cluster: NetnsCluster,
    *,
    expected: Collection[str] = (),
    priorities: dict[str, Priority] | None = None,
    kind: str = "ledger",
    prefix: str = "",
) -> Snapshot:
    """One look at the cluster (see the module docstring); ``expected`` names must be
    listed (acknowledged registrations)."""
    snap = Snapshot()
    running = cluster.running_ids()
    leader = cluster.leader(running)
    if leader is None:
        snap.problems.append(f"no leader that all of {running} follow with a lease")
        return snap
    snap.leader = leader
    up = cluster.status(leader)["up"]
    if not set(running) <= set(up):
        snap.problems.append(f"view {up} lacks running nodes {sorted(set(running) - set(up))}")
        return snap
    listing = cluster.agent.request("list", leader, timeout=5.0, prefix=prefix)
    snap.names = {name: (node, int(token)) for name, node, token, _stale in listing}
    missing = [n for n in expected if n not in snap.names]
    if missing:
        snap.problems.append(f"{len(missing)} expected names not listed, e.g. {missing[:3]}")
    want = owners(snap.names, up, priorities or {}, kind)
    pids = {n.pid for n in cluster.nodes.values() if n.running()}
    live = live_activations(cluster.ledger, pids)
    for name, (holder, token) in sorted(snap.names.items()):
        if not holder:
            snap.problems.append(f"{name} waits for a holder")
        elif holder != want[name]:
            snap.problems.append(f"{name} is held by {holder}, owner is {want[name]}")
        elif live.get(name) != [(holder, token, True)]:
            snap.problems.append(f"{name}: listed {holder}#{token}, running {live.get(name)}")
    return snap


def count_live(ledger: Path, pids: Collection[int], prefix: str = "") -> int:
    """How many names have a live, accepted activation (a cheap progress measure)."""
    live = live_activations(ledger, pids)
    return sum(
        1 for name, acts in live.items() if name.startswith(prefix) and any(a[2] for a in acts)
    )


def query(ledger: Path, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run one read-only query on the ledger (for tests)."""
    conn = connect(ledger)
    try:
        conn.row_factory = None
        rows: list[tuple[object, ...]] = conn.execute(sql, args).fetchall()
        return rows
    except sqlite3.Error:
        raise
    finally:
        conn.close()
