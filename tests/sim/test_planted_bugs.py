"""Each checker fails on its bug, end to end: a bug is planted in the simulated shell
(``registry.sim.faults.SimFaults``, a sim-only switch that nothing in ``registry.node``
reads), the whole simulation runs, and the checker for that guarantee must report it —
while the same seeds without the plant stay clean (tests/sim/test_cluster_sim.py).

==================  ================  =================================================
plant               checker           what it catches
==================  ================  =================================================
no_kill             single-activation G1: a host that ignores stop outlives the lease
reuse_token         fencing           G2: a start with a token not above an earlier one
ack_on_accept       registrations     G3: an acknowledged registration missing at the end
drop_handoff        handoff-state     G5: Resume(state) given, RESTART without state
failover_delay_us   failover          G4: a lost node's name runs again too late
stale_checkpoint    checkpoints       G2 for state: the state machine keeps a superseded
                                      activation's checkpoint after its successor's
==================  ================  =================================================
"""

from __future__ import annotations

import random

import pytest

from registry.sim.cluster.checkers import ClusterSuite, SingleActivation
from registry.sim.cluster.harness import ClusterConfig, ClusterSim
from registry.sim.cluster.heal import HealPhase
from registry.sim.cluster.runner import ClusterSeedResult, finish, run_cluster_seed
from registry.sim.cluster.runtime import HandoffBehaviour
from registry.sim.cluster.workload import ClusterWorkload
from registry.sim.engine.nemesis import Nemesis
from registry.sim.faults import SimFaults

S = 1_000_000


def _caught(result: ClusterSeedResult, checker: str) -> list[str]:
    return [v for v in result.violations if f"[{checker}]" in v]


@pytest.mark.parametrize(
    ("faults", "seed", "checker", "words"),
    [
        (SimFaults(reuse_token=True), 1, "fencing", "not above token"),
        (SimFaults(ack_on_accept=True), 2, "registrations", "lost registration"),
        (SimFaults(drop_handoff=True), 1, "handoff-state", "restarted without state"),
        (SimFaults(failover_delay_us=8 * S), 6, "failover", "ran again"),
    ],
    ids=["G2-reuse-token", "G3-ack-on-accept", "G5-drop-handoff", "G4-slow-failover"],
)
def test_planted_bug_is_caught(faults: SimFaults, seed: int, checker: str, words: str) -> None:
    result = run_cluster_seed(seed, names=60, duration_s=8.0, faults=faults)
    found = _caught(result, checker)
    assert found, f"[{checker}] missed the plant; violations: {result.violations[:5]}"
    assert any(words in v for v in found), found[:3]
    clean = run_cluster_seed(seed, names=60, duration_s=8.0)
    assert clean.violations == ()


def test_stale_checkpoint_is_caught() -> None:
    """Seed 7: a name's first activation (token 45) is cut off; its checkpoint, sent again
    after the failover, reaches the log after the successor's (token 533). Without the
    plant the state machine refuses it (and such refusals happen in most seeds)."""
    result = run_cluster_seed(7, faults=SimFaults(stale_checkpoint=True))
    found = _caught(result, "checkpoints")
    assert any("stale state overwrote its successor's" in v for v in found), result.violations
    clean = run_cluster_seed(7)
    assert clean.violations == ()
    assert clean.stats["checkpoints_refused_by_log"] > 0  # stale ones did reach the log
    assert clean.stats["checkpoint_restores"] > 0  # failovers resumed checkpoints


def _isolation_run(*, faults: SimFaults, pause: bool = False) -> tuple[list[str], int, int]:
    """Three nodes whose every worker ignores stop; a node that holds names is cut off
    (or its control process paused) for 5 s, past down_after, so they fail over; then the
    cluster heals. Returns the G1 violations, the hosts killed or exited by their
    watchdog, and the names that failed over."""
    rng = random.Random(7)
    suite = ClusterSuite()
    both = ("batch", "web")
    config = ClusterConfig(
        nodes=3,
        voters=3,
        roles={n: both for n in ("n1", "n2", "n3")},
        handoff=HandoffBehaviour(ignore_stop=1.0),
        faults=faults,
    )
    sim = ClusterSim(rng=random.Random(rng.getrandbits(64)), config=config, suite=suite)
    workload = ClusterWorkload(sim, random.Random(rng.getrandbits(64)), names=40)
    sim.hooks = workload
    heal = HealPhase(sim, workload, Nemesis(sim.world, random.Random(1)), bound_us=30 * S)
    sim.boot()
    workload.start(delay_us=500_000)
    sim.world.run_until(4 * S)
    workload.writing = False  # no unregisters from here on: only the lease loss stops
    sim.world.run_until(5 * S)
    leader = sim.leader()
    assert leader is not None
    victim = next(h for n, h in sorted(sim.hosts.items()) if n != leader.id)
    assert victim.runtime is not None and victim.runtime.active, "the victim must run names"
    others = [n for n in sim.hosts if n != victim.id]
    if pause:
        sim.world.pause(victim.id, 5 * S)
    else:
        sim.world.network.split([[victim.id], others])
    sim.world.run_until(10 * S)
    heal.start()
    sim.world.run_until(sim.world.now_us + heal.bound_us)
    finish(sim, heal)
    g1 = suite.get(SingleActivation).violations
    return g1, sim.ledger.kills + sim.ledger.watchdog_exits, sim.ledger.starts["failover"]


@pytest.mark.parametrize("pause", [False, True], ids=["cut-off", "control-paused"])
def test_host_that_ignores_stop_is_killed_in_time(pause: bool) -> None:
    """Cut off: the control process SIGKILLs the hosts fence_grace after the stop. Control
    process paused (SIGSTOP): it can kill nothing, and the hosts' watchdog ends them
    fence_grace after the sub-lease."""
    g1, ended, failovers = _isolation_run(faults=SimFaults(), pause=pause)
    assert failovers > 0 and ended > 0
    assert g1 == []


@pytest.mark.parametrize("pause", [False, True], ids=["cut-off", "control-paused"])
def test_no_sigkill_is_caught(pause: bool) -> None:
    """G1 planted: the control process never kills a host that ignores stop, and the
    host has no watchdog: the lost node's workers run on beside their failovers."""
    g1, ended, failovers = _isolation_run(faults=SimFaults(no_kill=True), pause=pause)
    assert ended == 0 and failovers > 0
    assert g1 and all("ran twice" in v for v in g1)


@pytest.mark.parametrize("seed", [9, 10])
def test_workers_that_ignore_stop_across_seeds(seed: int) -> None:
    """Workers that ignore stop, under the full nemesis: an unregistered name is freed,
    and a fenced node rejoins, only once the runtime reports that the old activation has
    ended (its host killed), so a name never runs twice (G1). Seed 9 found both gaps;
    seed 10 catches each of them alone (an unregister confirmed at the Stop; a fenced
    node heartbeating before its stops are reported)."""
    result = run_cluster_seed(
        seed, names=150, duration_s=30.0, ignore_stop=0.1, checkpoints=False
    )  # the histories that found the gaps: from before the model had checkpoints
    assert result.violations == ()
