"""``Scenario``: one netns cluster with its history, nemesis and checker, for one test.

A scenario registers ledger names, injects faults (a ``Plan`` through the nemesis, or a
hand-made partition with ``partition()`` when the test acts during the fault), waits for
convergence with a deadline, and ends with ``verify()``: the final listing is recorded
and the checker must find nothing (G1–G6).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from registry.core.timing import preset as timing_preset
from registry.testing import convergence
from registry.testing.agent import AgentError
from registry.testing.cluster import NetnsCluster, wait_for
from registry.testing.history import History
from registry.testing.jepsen import wait_converged
from registry.testing.jepsen_check import Report, check
from registry.testing.nemesis import Nemesis, Plan, down_after
from registry.testing.netns import Drop

CONVERGE_S = 20.0
"""Bound on convergence after a heal in these tests, seconds (preset local)."""

Live = dict[str, list[tuple[str, int, bool]]]


class Scenario:
    def __init__(self, root: Path, size: int, preset: str = "local") -> None:
        self.cluster = NetnsCluster(root, size, preset=preset)
        self.timing = timing_preset(preset)
        self.down_after = down_after(self.timing)
        self.priorities: dict[str, convergence.Priority] = {}
        self._history: History | None = None
        self._nemesis: Nemesis | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.cluster.start(timeout=60.0)
        self._history = History(self.cluster.ledger)
        self._nemesis = Nemesis(self.cluster, self._history, self.timing)

    def close(self) -> None:
        try:
            self.cluster.close()
        finally:
            if self._history is not None:
                self._history.close()

    @property
    def history(self) -> History:
        assert self._history is not None
        return self._history

    @property
    def nemesis(self) -> Nemesis:
        assert self._nemesis is not None
        return self._nemesis

    # -- names -------------------------------------------------------------------------

    def register(self, specs: list[dict[str, Any]], via: str = "") -> None:
        """Register ``specs`` in one batch (retrying until acknowledged, bounded)."""
        node = via or self.cluster.ids[0]
        for s in specs:
            if s.get("priority"):
                self.priorities[s["name"]] = tuple(tuple(t) for t in s["priority"])

        def attempt() -> bool:
            t_sent = time.monotonic()
            try:
                self.cluster.agent.request("register_many", node, timeout=3.0, specs=specs)
            except AgentError as exc:
                if exc.code == "ALREADY_EXISTS":
                    raise
                return False
            self.history.acked([s["name"] for s in specs], t_sent, time.monotonic())
            return True

        wait_for(f"{len(specs)} registrations via {node}", attempt, 20.0, 0.2)

    def register_names(self, count: int, prefix: str = "s-") -> list[str]:
        names = [f"{prefix}{i:04d}" for i in range(count)]
        self.register([{"name": n, "kind": "ledger"} for n in names])
        self.converge()
        return names

    def live(self) -> Live:
        """name → live activations [(node, token, claim accepted)] in running processes."""
        pids = {n.pid for n in self.cluster.nodes.values() if n.running()}
        return convergence.live_activations(self.cluster.ledger, pids)

    def wait_live(self, what: str, cond: Callable[[Live], bool], timeout: float) -> Live:
        def probe() -> Live | None:
            live = self.live()
            return live if cond(live) else None

        return wait_for(what, probe, timeout)

    def sample_leaders(self, duration: float) -> list[tuple[str, int, str]]:
        """Ask every running node for its term and leader, again and again for
        ``duration`` seconds (the fault's length); returns (node, term, leader) for every
        answer that named a leader, and records them for the checker's election safety."""
        seen: list[tuple[str, int, str]] = []
        end = time.monotonic() + duration
        while time.monotonic() < end:
            for node in self.cluster.running_ids():
                try:
                    status = self.cluster.status(node, timeout=1.0)
                except AgentError:
                    continue
                if status["leader"]:
                    seen.append((node, int(status["term"]), str(status["leader"])))
                    self.history.leaders(
                        [(node, time.monotonic(), int(status["term"]), str(status["leader"]))]
                    )
            time.sleep(0.1)  # sampling period, within the fault's fixed duration
        return seen

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        """Rows of one read-only query on the ledger."""
        return convergence.query(self.cluster.ledger, sql, args)

    def faults_injected(self) -> int:
        count = self.query("SELECT COALESCE(SUM(count), 0) FROM faults")[0][0]
        assert isinstance(count, int)
        return count

    def starts(self, reason: str, name: str | None = None) -> int:
        """How many activations started with ``reason`` (of ``name``, or of any)."""
        sql = "SELECT COUNT(*) FROM activations WHERE reason = ?"
        args: tuple[object, ...] = (reason,)
        if name is not None:
            sql += " AND name = ?"
            args = (reason, name)
        count = convergence.query(self.cluster.ledger, sql, args)[0][0]
        assert isinstance(count, int)
        return count

    def holders(self, names: list[str]) -> dict[str, str]:
        """Where each of ``names`` runs now (names not running are left out)."""
        live = self.live()
        return {n: live[n][0][0] for n in names if len(live.get(n, [])) == 1}

    # -- faults ------------------------------------------------------------------------

    def plan(self, kind: str, nodes: list[str], hold: float = 0.0) -> Plan:
        ids = sorted(self.cluster.ids)
        picks = tuple(ids.index(n) for n in nodes)
        return Plan(kind=kind, picks=picks, hold=hold or self.down_after + 0.8)

    def inject(self, plan: Plan) -> list[int]:
        """Run ``plan`` through the nemesis (inject, hold, heal) and wait to converge."""
        fids, _t_heal = self.nemesis.run(plan)
        self.converge(fids[-1])
        return fids

    @contextlib.contextmanager
    def partition(self, kind: str, drops: set[Drop], targets: list[str]) -> Iterator[int]:
        """Drop ``drops`` for the duration of the ``with`` block (the test acts inside),
        recorded as one fault of ``kind``; heals even if the block raises."""
        t0 = time.monotonic()
        self.cluster.net.set_drops(drops)
        fid = self.nemesis.record(kind, str(sorted(drops)), targets, t0)
        try:
            yield fid
        finally:
            self.cluster.net.heal()
            self.history.healed(fid, time.monotonic())

    def converge(self, fid: int | None = None, timeout: float = CONVERGE_S) -> None:
        t = wait_converged(self.cluster, self.priorities, timeout)
        if fid is not None:
            self.history.converged(fid, -1.0 if t is None else t)
        if t is None:
            snap = convergence.snapshot(self.cluster, priorities=self.priorities)
            raise AssertionError(f"no convergence within {timeout:g} s: {snap}")

    # -- the verdict -------------------------------------------------------------------

    def verify(self, *, excuse_pauses: bool = False) -> Report:
        """Record the final listing, run the checker, and fail on any violation
        (``excuse_pauses``: see ``jepsen_check``; for workers frozen with their node)."""
        self.converge()
        leader = self.cluster.leader() or self.cluster.ids[0]
        listing = self.cluster.agent.request("list", leader, timeout=5.0)
        self.history.final({name: (node, int(token)) for name, node, token, _ in listing})
        report = check(self.cluster.ledger, excuse_pauses=excuse_pauses)
        assert report.ok, "checker found violations:\n" + "\n".join(report.examples)
        return report
