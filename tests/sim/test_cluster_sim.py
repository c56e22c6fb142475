"""The registry cluster simulation: many seeds against G1–G5, the bridge partition that
makes Swarm run a name twice, proof that the checkers bite when the lease rule is broken,
and determinism.

Seeds run in chunks of ``CHUNK`` so that ``pytest -n auto`` spreads them over the cores.
``CLUSTER_SIM_SEEDS`` (default 60), ``CLUSTER_SIM_DURATION`` (simulated seconds of
nemesis, default 30) and ``CLUSTER_SIM_NAMES`` (default 150) scale the run.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import pytest

import registry.sim.cluster.checkers as cluster_checkers
from registry.cli import main
from registry.core.timing import PRESETS
from registry.sim.checks import Checker, GoalReached
from registry.sim.cluster.checkers import ClusterSuite, SingleActivation
from registry.sim.cluster.harness import ClusterConfig, ClusterSim
from registry.sim.cluster.heal import HealPhase
from registry.sim.cluster.observations import ClusterObservation
from registry.sim.cluster.runner import (
    ClusterSeedResult,
    finish,
    run_cluster_seed,
)
from registry.sim.cluster.workload import ClusterWorkload
from registry.sim.engine.nemesis import Nemesis
from registry.sim.runner import percentile, run_seeds

ROOT = Path(__file__).resolve().parents[2]
SEEDS = int(os.environ.get("CLUSTER_SIM_SEEDS", "60"))
DURATION_S = float(os.environ.get("CLUSTER_SIM_DURATION", "30"))
NAMES = int(os.environ.get("CLUSTER_SIM_NAMES", "150"))
CHUNK = 6
S = 1_000_000
FAILOVER_P50_S = 3.0
"""DESIGN §5's failover target, for the median of each chunk's samples (measured over
seeds 0–59: chunk medians 1.85–1.96 s). The tail is bounded per sample by the checker
(6 s: a second fault during a failover does not reset its clock unless it takes the
leader that owed the failover; the worst chunk p99 was 4.8 s)."""
MIN_CHECKED_SHARE = 0.6
"""The registrations checker must judge at least this share of the names."""
MAX_CANCELLED_SHARE = 0.5
"""Failover samples cancelled (no failover owed any more) may not exceed this share of
all samples in a chunk (measured: 21–40 % per chunk over seeds 0–59)."""


def _report(failing: list[ClusterSeedResult]) -> str:
    lines = []
    for result in failing:
        lines.append(f"seed {result.seed} ({result.shape}):")
        lines.extend(f"  {v}" for v in result.violations)
        lines.append(f"  replay: {result.replay_command()}")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("start", range(0, SEEDS, CHUNK), ids=lambda s: f"seeds{s}-{s + CHUNK - 1}")
def test_no_violations(start: int) -> None:
    seeds = range(start, min(start + CHUNK, SEEDS))
    results = run_seeds(
        partial(run_cluster_seed, nodes=5, names=NAMES, duration_s=DURATION_S), seeds
    )
    failing = [r for r in results if r.violations]
    assert not failing, "simulation found violations:\n" + _report(failing)
    for result in results:
        assert result.sim_seconds >= DURATION_S
        assert result.heal_converge_s is not None
        assert result.stats["registrations_acked"] > 0 and result.stats["calls_ok"] > 0
    # The harness must keep exercising what it claims to; a silent regression here would
    # make the zero-violation result above meaningless.
    totals = {key: sum(r.stats.get(key, 0) for r in results) for key in results[0].stats}
    starts = {k: sum(r.starts.get(k, 0) for r in results) for k in results[0].starts}
    assert starts["new"] > 0 and starts["failover"] > 0 and starts["handoff"] > 0
    assert sum(r.handoffs for r in results) > 0
    failovers = [s for r in results for s in r.failover_s]
    assert failovers
    p50 = percentile(failovers, 50)
    assert p50 is not None and p50 <= FAILOVER_P50_S, f"failover p50 {p50:.3f}s"
    cancelled = totals["failover_censored"]
    assert cancelled <= MAX_CANCELLED_SHARE * (cancelled + len(failovers)), (
        f"{cancelled} failover samples cancelled, {len(failovers)} measured"
    )
    # Names skipped for an op of unknown outcome must stay few (measured: 27–100 % of the
    # names checked per seed, 85–100 % per chunk of seeds 0–59).
    checked = totals["registrations_checked"]
    assert checked >= MIN_CHECKED_SHARE * NAMES * len(results), f"{checked} names checked"
    assert totals["unregistrations_acked"] > 0
    assert totals["snapshots_installed"] > 0
    assert totals["messages_lost"] > 0
    # Workers checkpoint, and failovers resume what they checkpointed (``checkpoints``).
    assert totals["checkpoints_applied"] > 0 and totals["checkpoint_restores"] > 0
    # Reminders fire, and starts catch up the periods their predecessors missed
    # (``reminders``: at least once, duplicates only where a holder was lost before its
    # firing was acknowledged); activations running at the end are judged too.
    assert totals["reminders_fired"] > 0 and totals["reminder_owed_at_start"] > 0
    assert totals["reminder_judged_running"] > 0


# -- the bridge partition ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Bridged:
    a: str
    c: str
    """The two ends (``a`` and ``c`` cannot talk; both talk to the middle node)."""
    before: dict[str, list[str]]
    """Names running on each node just before the bridge."""
    during: dict[str, list[str]]
    """... and after 10 s of it."""
    violations: list[str]
    duplicates: int
    converged: bool


def _bridge_run(seed: int, *, leader_in_the_middle: bool) -> _Bridged:
    """Three voters, names everywhere; then A↔B↔C with A↮C for 10 s; then heal."""
    rng = random.Random(seed)
    suite = ClusterSuite()
    both = ("batch", "web")
    config = ClusterConfig(nodes=3, voters=3, roles={n: both for n in ("n1", "n2", "n3")})
    sim = ClusterSim(rng=random.Random(rng.getrandbits(64)), config=config, suite=suite)
    workload = ClusterWorkload(sim, random.Random(rng.getrandbits(64)), names=60)
    sim.hooks = workload
    nemesis = Nemesis(sim.world, random.Random(rng.getrandbits(64)))  # never started
    heal = HealPhase(sim, workload, nemesis, bound_us=30 * S)
    sim.boot()
    workload.start(delay_us=500_000)
    sim.world.run_until(5 * S)
    workload.writing = False  # registry ops stop (counter calls go on): the names stay put
    sim.world.run_until(6 * S)
    leader = sim.leader()
    assert leader is not None
    x, y = sorted(n for n in sim.hosts if n != leader.id)
    a, b, c = (x, leader.id, y) if leader_in_the_middle else (leader.id, x, y)

    def running() -> dict[str, list[str]]:
        return {n: sorted(h.runtime.active) for n, h in sim.hosts.items() if h.runtime}

    before = running()
    assert before[a] and before[c], "names must run on both ends of the bridge"
    sim.world.network.bridge([a], b, [c])
    sim.world.run_until(16 * S)
    during = running()
    heal.start()
    sim.world.run_until(sim.world.now_us + heal.bound_us)
    finish(sim, heal)
    return _Bridged(
        a=a,
        c=c,
        before=before,
        during=during,
        violations=suite.violations(),
        duplicates=suite.get(SingleActivation).count,
        converged=heal.converged_us is not None,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_bridge_partition_never_runs_a_name_twice(seed: int) -> None:
    """Swarm counts reachable nodes per node: A sees {A, B}, C sees {B, C}, both think
    they are the majority, and each restarts the other's names — two copies. Here the
    leader sits at one end (A): C cannot reach it, fences, and only then do its names run
    on A or B; A keeps its own. After the heal everything converges by handoff."""
    out = _bridge_run(seed, leader_in_the_middle=False)
    assert out.violations == [] and out.duplicates == 0
    assert out.during[out.c] == [], "the end cut off from the leader must have fenced"
    assert set(out.before[out.a]) <= set(out.during[out.a]), "the leader's end keeps its names"
    moved = set(out.before[out.c])
    elsewhere = {n for node, names in out.during.items() if node != out.c for n in names}
    assert moved <= elsewhere, "the fenced end's names run on the other side"
    assert out.converged


def test_bridge_with_the_leader_in_the_middle_moves_nothing() -> None:
    out = _bridge_run(4, leader_in_the_middle=True)
    assert out.violations == [] and out.duplicates == 0
    assert out.before == out.during
    assert out.converged


# -- the unsafe switch -------------------------------------------------------------------


def test_unsafe_switch_is_caught() -> None:
    """Declare members down after 0.5 s, well inside their 1 s lease (Timing.validate
    would refuse this): a member that is merely slow or cut off still runs its names when
    they start elsewhere, and G1 must say so."""
    safe = PRESETS["lan"].membership()
    unsafe = replace(safe, down_after_tick=safe.lease_tick // 2)
    results = run_seeds(
        partial(run_cluster_seed, names=100, duration_s=20.0, membership=unsafe), range(3)
    )
    assert any(r.duplicates > 0 for r in results), [r.violations for r in results]
    duplicate = next(v for r in results for v in r.violations if "[single-activation]" in v)
    assert "ran twice" in duplicate


# -- leadership transfers ----------------------------------------------------------------

TRANSFER_SEEDS = 12


@pytest.mark.slow
@pytest.mark.parametrize(
    "start", range(0, TRANSFER_SEEDS, CHUNK), ids=lambda s: f"seeds{s}-{s + CHUNK - 1}"
)
def test_leadership_transfers_and_their_handover_keep_every_guarantee(start: int) -> None:
    """Membership rule 5's handover under the nemesis: the leader hands leadership over
    now and then (``--transfers``), and its successor counts a silent member's time
    from what the ``TIMEOUT_NOW`` says rather than from its own win. G1 is what must
    hold: a count that came out too short would start a name while its holder, cut off,
    still runs it. The failover bound is what the handover buys: with the receiver
    ignoring it, seeds here broke the checker's 6 s bound."""
    seeds = range(start, min(start + CHUNK, TRANSFER_SEEDS))
    run = partial(run_cluster_seed, nodes=5, names=NAMES, duration_s=DURATION_S, transfers=True)
    results = run_seeds(run, seeds)
    failing = [r for r in results if r.violations]
    assert not failing, "simulation found violations:\n" + _report(failing)
    transfers = [r.stats["transfers"] for r in results]
    assert sum(transfers) >= len(results), f"transfers per seed: {transfers}"
    assert sum(r.starts.get("failover", 0) for r in results) > 0


# -- paced handoffs ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 5, 6])
def test_a_narrow_handoff_window_keeps_every_guarantee(seed: int) -> None:
    """``max_handoffs_in_flight`` of 2 (the default, 250, never binds at this size):
    the backlog path runs under the same faults, and names still converge on their
    owners after every heal. (Seeds whose schedules move names back by handoff; with
    the window, their heals converge visibly later: 1.15 → 1.75 s, 0.85 → 2.55 s.)"""
    paced = replace(PRESETS["lan"].membership(), max_handoffs_in_flight=2)
    out = run_cluster_seed(seed, names=100, duration_s=20.0, membership=paced)
    assert out.ok, out.violations
    assert out.duplicates == 0
    assert out.handoffs > 2


@pytest.mark.parametrize("seed", [1, 2, 5, 6])
def test_a_narrow_reconcile_chunk_keeps_every_guarantee(seed: int) -> None:
    """``max_reconcile_names`` of 3 (the default, 1000, never binds at this size): every
    failover's starts and every heal's handoffs are spread over Readies, under the same
    faults, and every checker still passes (no duplicate, every name back)."""
    chunked = replace(PRESETS["lan"].membership(), max_reconcile_names=3)
    out = run_cluster_seed(seed, names=100, duration_s=20.0, membership=chunked)
    assert out.ok, out.violations
    assert out.duplicates == 0
    assert out.handoffs > 3


# -- determinism -------------------------------------------------------------------------


def _fingerprint(seed: int) -> tuple[object, ...]:
    r = run_cluster_seed(seed, names=60, duration_s=8.0)
    return (r.trace_digest, r.violations, r.events, r.starts, r.failover_s, r.stats)


def test_same_seed_same_trace() -> None:
    assert _fingerprint(5) == _fingerprint(5)
    assert _fingerprint(6)[0] != _fingerprint(5)[0]


def test_same_trace_under_another_hash_seed() -> None:
    code = (
        "from registry.sim.cluster.runner import run_cluster_seed;"
        "print(run_cluster_seed(9, names=60, duration_s=6.0).trace_digest)"
    )
    digests = {run_cluster_seed(9, names=60, duration_s=6.0).trace_digest}
    env = dict(os.environ, PYTHONHASHSEED="3", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
    )
    digests.add(out.stdout.decode().strip())
    assert len(digests) == 1


# -- the CLI -----------------------------------------------------------------------------


def _last_json(text: str) -> dict[str, object]:
    result = json.loads(text.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


def test_cli_json_summary(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sim", "cluster", "--seeds", "2", "--duration", "4", "--names", "40"]
    assert main([*argv, "--jobs", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    summary = _last_json(out)
    required = {
        "seeds",
        "violations",
        "duplicates",
        "lost_registrations",
        "stale_tokens",
        "failover_p50_s",
        "failover_p99_s",
        "failover_max_s",
        "heal_converge_p99_s",
        "handoffs",
        "failovers",
        "wall_seconds",
        "sim_seconds",
        "failing_seeds",
        "replay",
    }
    assert required <= summary.keys()
    assert summary["seeds"] == 2 and summary["violations"] == 0 and summary["replay"] == []
    assert "[2/2] violations 0" in err and "heal convergence" in out


class _Tripwire(Checker[ClusterObservation]):
    name = "tripwire"
    handles = (GoalReached,)

    def feed(self, obs: ClusterObservation) -> None:
        self.violation(obs.at_us, "", "converged")


def test_cli_violation_exits_1_with_replay(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    defaults = cluster_checkers.cluster_checkers
    monkeypatch.setattr(cluster_checkers, "cluster_checkers", lambda: [*defaults(), _Tripwire()])
    argv = ["sim", "cluster", "--seed", "3", "--duration", "3", "--names", "20", "--json"]
    assert main(argv) == 1
    out, _ = capsys.readouterr()
    replay = "registry sim cluster --seed 3 --nodes 5 --names 20 --duration 3"
    assert f"replay: {replay}" in out and "[tripwire] converged" in out
    summary = _last_json(out)
    assert summary["failing_seeds"] == [3] and summary["replay"] == [replay]
