"""A randomized run: a cluster in namespaces, a workload, a nemesis schedule, a check.

``run(JepsenConfig(...))``:

1. builds a ``NetnsCluster`` (ledger workers) and registers ``names`` names (5 % of them
   with a two-node priority list, the rest on the ring), then waits until all run;
2. starts a client workload against random nodes: new registrations, unregisters of some
   of them, lookups, calls to running names (answered by the worker with its node and
   token), and ``/status`` samples of the term and leader (election safety);
3. draws faults from ``nemesis.schedule(seed)`` until ``time_s`` has passed: each one is
   injected, held, healed, and followed by a bounded wait for convergence, whose duration
   is recorded (G5);
4. waits for a final convergence, stores the final listing, stops the cluster (SIGTERM,
   graceful) and checks the ledger (``jepsen_check.check``).

Everything it does is in the ledger file under ``root``; the same seed replays the same
schedule of kinds, targets and durations.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from registry.core.timing import preset as timing_preset
from registry.testing import convergence, ledger
from registry.testing.agent import AgentError
from registry.testing.cluster import NetnsCluster, wait_for
from registry.testing.history import History
from registry.testing.jepsen_check import Report, check
from registry.testing.nemesis import KINDS, Nemesis, schedule

BATCH = 250


@dataclass(frozen=True, slots=True, kw_only=True)
class JepsenConfig:
    nodes: int = 5
    """Cluster size (voters). Default 5."""
    time_s: float = 60.0
    """How long faults keep coming, seconds (the run ends after the fault in progress)."""
    names: int = 1000
    """Names registered before the first fault. Default 1000."""
    nemesis: tuple[str, ...] = KINDS
    """Fault kinds to draw from. Default: all of them."""
    seed: int = 0
    """Seed of the fault schedule and the workload."""
    preset: str = "lan"
    """Timing preset of the nodes. Default ``lan``."""
    root: Path | None = None
    """Where data, logs and the ledger go; default a temporary directory (kept only
    if ``keep``)."""
    keep: bool = False
    """Keep ``root`` after the run (logs and ledger for a post-mortem)."""
    max_faults: int | None = None
    """Stop after this many scheduled faults (whatever ``time_s`` says)."""
    workload: bool = True
    """Run the client workload beside the faults."""
    excuse_pauses: bool = False
    """Accept overlaps excused by a SIGSTOP (``jepsen_check``). Off: the nemesis stops only
    the node's control process, and its worker hosts' watchdogs end their activations
    within sub-lease + ``fence_grace``, before any failover — so any overlap is a
    violation. (On only for runs of workers that live inside the paused process.)"""
    log: Callable[[str], None] = field(default=lambda _: None)
    """Progress lines (one per fault)."""


@dataclass(slots=True)
class Outcome:
    report: Report
    seed: int
    duration_s: float
    root: Path
    node_crashes: dict[str, int]


def converge_bound(preset: str) -> float:
    """How long a heal may take before it counts as not converging, seconds."""
    return 20.0 * max(1.0, timing_preset(preset).lease)


class Workload:
    """Registrations, unregisters, lookups, calls and status samples against random nodes,
    in a thread."""

    def __init__(
        self, cluster: NetnsCluster, history: History, seed: int, cap: int, names: int
    ) -> None:
        self.cluster = cluster
        self.names = max(1, names)
        self.history = history
        self.rng = random.Random(seed)
        self.cap = cap
        self.registered = 0
        self._acked: list[str] = []
        """Workload names whose registration was acknowledged and not yet unregistered."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="workload", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (safe to call twice, or before ``start``)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30.0)

    def _run(self) -> None:
        while not self._stop.wait(0.1):  # the workload's pace, not a wait for a condition
            node = self.rng.choice(self.cluster.ids)
            if not self.cluster.nodes[node].running() or self.cluster.nodes[node].paused:
                continue
            self.sample_leader(node)
            roll = self.rng.random()
            if self.registered < self.cap and roll < 0.35:
                name = f"w-{self.registered:05d}"
                self.registered += 1
                if self.register(node, [{"name": name, "kind": "ledger"}], "register"):
                    self._acked.append(name)
            elif self._acked and roll < 0.45:
                self.unregister(node, self._acked.pop(self.rng.randrange(len(self._acked))))
            elif roll < 0.75:
                self.call(node, f"j-{self.rng.randrange(self.names):05d}")
            else:
                name = f"j-{self.rng.randrange(self.names):05d}"
                try:
                    self.cluster.agent.request("whereis", node, timeout=1.0, name=name)
                    self.history.op("whereis", node, True)
                except AgentError as exc:
                    self.history.op("whereis", node, False, exc.code)

    def sample_leader(self, node: str) -> None:
        """Election safety: record the term and leader ``node`` reports."""
        try:
            s = self.cluster.status(node, timeout=1.0)
        except AgentError:
            return
        if s["leader"]:
            self.history.leaders([(node, time.monotonic(), int(s["term"]), str(s["leader"]))])

    def unregister(self, node: str, name: str) -> None:
        """An error leaves the outcome unknown (it may have committed)."""
        try:
            self.cluster.agent.request("unregister", node, timeout=3.0, name=name)
        except AgentError as exc:
            self.history.unregistered(name, acked=False)
            self.history.op("unregister", node, False, exc.code)
            return
        self.history.unregistered(name, acked=True)
        self.history.op("unregister", node, True)

    def call(self, node: str, name: str) -> None:
        """The worker answers ``node:token`` of the activation that took the call."""
        t_sent = time.monotonic()
        try:
            answer = self.cluster.agent.request(
                "call", node, timeout=2.0, name=name, payload="whoami"
            )
        except AgentError as exc:
            self.history.op("call", node, False, exc.code)
            return
        where, _, token = str(answer).rpartition(":")
        self.history.answered(name, where, int(token), t_sent, time.monotonic())
        self.history.op("call", node, True)

    def register(self, node: str, specs: list[dict[str, object]], kind: str) -> bool:
        t_sent = time.monotonic()
        try:
            self.cluster.agent.request("register_many", node, timeout=3.0, specs=specs)
        except AgentError as exc:
            self.history.op(kind, node, False, exc.code)
            return False
        self.history.acked([str(s["name"]) for s in specs], t_sent, time.monotonic())
        self.history.op(kind, node, True)
        return True


def initial_specs(
    count: int, ids: list[str], rng: random.Random
) -> tuple[list[dict[str, object]], dict[str, convergence.Priority]]:
    """``count`` ledger names; every 20th has a two-node priority list."""
    specs: list[dict[str, object]] = []
    priorities: dict[str, convergence.Priority] = {}
    for i in range(count):
        name = f"j-{i:05d}"
        spec: dict[str, object] = {"name": name, "kind": "ledger"}
        if i % 20 == 0:
            a, b = rng.sample(ids, 2)
            spec["priority"] = [[a], [b]]
            priorities[name] = ((a,), (b,))
        specs.append(spec)
    return specs, priorities


def wait_converged(
    cluster: NetnsCluster, priorities: dict[str, convergence.Priority], timeout: float
) -> float | None:
    """Poll until converged; the time it happened, or ``None`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            snap = convergence.snapshot(cluster, priorities=priorities)
        except AgentError:
            snap = None
        if snap is not None and snap.ok:
            return time.monotonic()
        time.sleep(0.1)  # poll interval of a bounded wait
    return None


def run(cfg: JepsenConfig) -> Outcome:
    started = time.monotonic()
    root = cfg.root or Path(tempfile.mkdtemp(prefix="qrp-jepsen-"))
    root.mkdir(parents=True, exist_ok=True)
    path = root / "ledger.sqlite"
    ledger.create(path)
    history = History(path)
    timing = timing_preset(cfg.preset)
    bound = converge_bound(cfg.preset)
    spare = "member-change" in cfg.nemesis  # a namespace for the nodes it adds
    cluster = NetnsCluster(root, cfg.nodes, preset=cfg.preset, ledger=path, spare=spare)
    crashes: dict[str, int] = {}
    workload: Workload | None = None
    try:
        cluster.start(timeout=60.0)
        rng = random.Random(cfg.seed)
        specs, priorities = initial_specs(cfg.names, cluster.ids, rng)
        workload = Workload(cluster, history, cfg.seed + 1, max(20, cfg.names // 10), cfg.names)
        for i in range(0, len(specs), BATCH):
            batch = specs[i : i + BATCH]

            def acked(batch: list[dict[str, object]] = batch) -> bool:
                return workload.register(cluster.ids[0], batch, "register_many")

            wait_for("an initial registration batch to be acknowledged", acked, 30.0, 0.2)
        if wait_converged(cluster, priorities, 60.0) is None:
            raise AssertionError("the cluster did not converge after the initial registration")
        cfg.log(
            f"{cfg.names} names running on {cfg.nodes} nodes after "
            f"{time.monotonic() - started:.1f} s; faults for {cfg.time_s:g} s"
        )
        if cfg.workload:
            workload.start()
        nemesis = Nemesis(cluster, history, timing)
        t_end = time.monotonic() + cfg.time_s
        for n, plan in enumerate(schedule(cfg.seed, cfg.nemesis, cfg.nodes, timing)):
            if time.monotonic() >= t_end or (cfg.max_faults is not None and n >= cfg.max_faults):
                break
            fids, t_heal = nemesis.run(plan)
            t_conv = wait_converged(cluster, priorities, bound)
            history.converged(fids[-1], -1.0 if t_conv is None else t_conv)
            took = f"{t_conv - t_heal:.2f} s" if t_conv is not None else "NOT within bound"
            cfg.log(
                f"fault {n + 1}: {plan.kind} {[cluster.ids[i] for i in plan.picks]}, "
                f"converged {took}"
            )
            for node, code in cluster.crashed().items():
                crashes[node] = code
                cfg.log(f"{node} exited with code {code}; restarting it")
                cluster.start_node(node)
        workload.stop()
        if wait_converged(cluster, priorities, bound) is None:
            cfg.log("the final convergence did not happen within the bound")
        leader = cluster.leader() or cluster.ids[0]
        listing = cluster.agent.request("list", leader, timeout=10.0)
        history.final({name: (node, int(token)) for name, node, token, _ in listing})
    finally:
        if workload is not None:
            workload.stop()
        crashes.update(cluster.crashed())
        cluster.close()
        history.close()
    report = check(path, excuse_pauses=cfg.excuse_pauses)
    outcome = Outcome(report, cfg.seed, time.monotonic() - started, root, crashes)
    if not cfg.keep and cfg.root is None and report.ok:
        shutil.rmtree(root, ignore_errors=True)
    return outcome
