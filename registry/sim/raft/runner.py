"""Run Raft simulation seeds and summarize them (``registry sim raft``).

One seed is one ``random.Random(seed)`` (see ``registry.sim.runner``, which drives every
family's seeds); a run is ``duration_s`` of nemesis followed by a calm phase of at most
``calm_bound_s`` (see ``registry.sim.raft.calm``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from registry.sim.checks.phases import RunEnded
from registry.sim.engine.nemesis import Nemesis
from registry.sim.raft.calm import LivenessPhase
from registry.sim.raft.checkers import CheckerSuite, Liveness
from registry.sim.raft.harness import HarnessConfig, RaftSim
from registry.sim.raft.observations import FinalState
from registry.sim.raft.workload import RaftWorkload
from registry.sim.runner import SeedOutcome, Totals, child_rngs, drive, leader_of, totals

LOG_CHECKPOINT_US = 1_000_000
DEFAULT_CALM_BOUND_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedResult(SeedOutcome):
    kind = "raft"
    default_calm_bound_s = DEFAULT_CALM_BOUND_S

    elections: int
    commits: int
    """Distinct log indexes applied anywhere (every entry kind)."""
    acked: int
    """Client writes acknowledged."""
    liveness_s: float | None
    """Calm-phase time until a leader applied a fresh write everywhere."""


def run_raft_seed(
    seed: int,
    nodes: int = 3,
    duration_s: float = 30.0,
    *,
    calm_bound_s: float = DEFAULT_CALM_BOUND_S,
    suite: CheckerSuite | None = None,
    keep_timeline: bool = False,
) -> SeedResult:
    """Run one seed. The nemesis timeline is kept in the result when the seed failed or
    ``keep_timeline`` is set."""
    wall_start = time.perf_counter()
    world_rng, nemesis_rng, client_rng = child_rngs(seed, 3)
    suite = suite or CheckerSuite()
    sim = RaftSim(rng=world_rng, config=HarnessConfig(nodes=nodes), suite=suite)
    workload = RaftWorkload(sim, client_rng, tag=str(seed), membership=nodes >= 5)
    sim.hooks = workload
    nemesis = Nemesis(sim.world, nemesis_rng, focus=leader_of(sim))
    calm = LivenessPhase(sim, workload, nemesis, bound_us=round(calm_bound_s * 1e6), tag=str(seed))
    duration_us = round(duration_s * 1e6)

    def start() -> None:
        sim.boot()
        workload.start()
        nemesis.start(until_us=duration_us)
        sim.world.every(LOG_CHECKPOINT_US, sim.sample_logs)

    def end() -> None:
        sim.sample_logs()
        sim.observe(calm.final_state())

    escaped = drive(
        sim.world,
        start=start,
        duration_us=duration_us,
        calm=calm.start,
        calm_bound_us=calm.bound_us,
        end=end,
    )
    if escaped:
        sim.observe(FinalState(at_us=sim.world.now_us, nodes=()))
    sim.observe(RunEnded(at_us=sim.world.now_us, detail=calm.describe()))
    violations = escaped + suite.violations()
    liveness = next((c.elapsed_us for c in suite.checkers if isinstance(c, Liveness)), None)
    net = sim.world.network.stats
    stats = dict(workload.stats)
    stats.update(
        {f"nemesis_{k}": v for k, v in nemesis.counts.items()},
        messages_sent=net.sent,
        messages_delivered=net.delivered,
        messages_lost=net.lost,
        messages_blocked=net.blocked,
        messages_duplicated=net.duplicated,
        snapshots_installed=sim.snapshots_installed,
        reads_served=sim.reads_served,
    )
    return SeedResult(
        seed=seed,
        nodes=nodes,
        duration_s=duration_s,
        calm_bound_s=calm_bound_s,
        violations=tuple(violations),
        elections=sim.elections,
        commits=sim.max_applied,
        acked=workload.stats["acked"],
        sim_seconds=sim.world.now_us / 1e6,
        wall_seconds=time.perf_counter() - wall_start,
        liveness_s=None if liveness is None else liveness / 1e6,
        events=sim.world.events,
        trace_digest=sim.world.trace_digest(),
        stats=stats,
        timeline=tuple(nemesis.timeline) if violations or keep_timeline else (),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary(Totals):
    elections: int
    commits: int
    acked: int
    liveness_max_s: float | None

    @property
    def speed(self) -> float:
        """Simulated cluster-seconds per wall second of one process."""
        return self.sim_seconds / self.wall_seconds if self.wall_seconds else 0.0


def summarize(results: Sequence[SeedResult]) -> Summary:
    lives = [r.liveness_s for r in results if r.liveness_s is not None]
    return Summary(
        **totals(results),
        elections=sum(r.elections for r in results),
        commits=sum(r.commits for r in results),
        acked=sum(r.acked for r in results),
        liveness_max_s=max(lives) if lives else None,
    )
