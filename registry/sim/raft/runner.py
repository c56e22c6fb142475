"""Run Raft simulation seeds and summarize them.

One seed is one ``random.Random(seed)``; every other RNG (world, network, node boots,
nemesis, clients) is a child seeded from it, so a seed replays exactly — and
``SeedResult.trace_digest`` proves it. A run is ``duration_s`` of nemesis followed by a
calm phase of at most ``calm_bound_s`` (see ``registry.sim.raft.calm``).

An exception escaping the core or the harness (``RaftInvariantError``, an illegal disk
write, a corrupt snapshot) ends the seed and is reported as a violation, with where it
was raised.
"""

from __future__ import annotations

import multiprocessing
import random
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial

from registry.sim.checks.phases import RunEnded
from registry.sim.engine.nemesis import Nemesis
from registry.sim.raft.calm import CalmPhase
from registry.sim.raft.checkers import CheckerSuite, Liveness
from registry.sim.raft.harness import HarnessConfig, RaftSim
from registry.sim.raft.observations import FinalState
from registry.sim.raft.workload import RaftWorkload

LOG_CHECKPOINT_US = 1_000_000
DEFAULT_CALM_BOUND_S = 10.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedResult:
    seed: int
    nodes: int
    duration_s: float
    calm_bound_s: float
    violations: tuple[str, ...]
    elections: int
    commits: int
    """Distinct log indexes applied anywhere (every entry kind)."""
    acked: int
    """Client writes acknowledged."""
    sim_seconds: float
    """True simulated time, nemesis plus calm phase."""
    wall_seconds: float
    liveness_s: float | None
    """Calm-phase time until a leader applied a fresh write everywhere."""
    events: int
    trace_digest: str
    stats: dict[str, int] = field(default_factory=dict)
    timeline: tuple[str, ...] = ()
    """What the nemesis did, for reading a failing seed."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay_command(self) -> str:
        command = (
            f"registry sim raft --seed {self.seed} --nodes {self.nodes} "
            f"--duration {self.duration_s:g}"
        )
        if self.calm_bound_s != DEFAULT_CALM_BOUND_S:
            command += f" --calm-bound {self.calm_bound_s:g}"
        return command


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
    root = random.Random(seed)
    world_rng, nemesis_rng, client_rng = (random.Random(root.getrandbits(64)) for _ in range(3))
    suite = suite or CheckerSuite()
    sim = RaftSim(rng=world_rng, config=HarnessConfig(nodes=nodes), suite=suite)
    workload = RaftWorkload(sim, client_rng, tag=str(seed), membership=nodes >= 5)
    sim.hooks = workload
    nemesis = Nemesis(sim.world, nemesis_rng, focus=lambda: _leader_id(sim))
    calm = CalmPhase(sim, workload, nemesis, bound_us=round(calm_bound_s * 1e6), tag=str(seed))
    duration_us = round(duration_s * 1e6)
    escaped: list[str] = []
    try:
        sim.boot()
        workload.start()
        nemesis.start(until_us=duration_us)
        sim.world.every(LOG_CHECKPOINT_US, sim.sample_logs)
        sim.world.run_until(duration_us)
        calm.start()
        sim.world.run_until(duration_us + calm.bound_us)
        sim.sample_logs()
        sim.observe(calm.final_state())
    except Exception as exc:  # any escape is a finding, reported below
        escaped.append(_describe_exception(sim.world.now_us, exc))
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


def _leader_id(sim: RaftSim) -> str | None:
    leader = sim.leader()
    return leader.id if leader else None


def _describe_exception(now_us: int, exc: Exception) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/registry/" in f.filename] or frames
    where = ", ".join(
        f"{f.filename.rsplit('/registry/', 1)[-1]}:{f.lineno} {f.name}" for f in ours[-3:]
    )
    return f"t={now_us / 1e6:.6f}s - [exception] {type(exc).__name__}: {exc} (in {where})"


def run_raft_seeds(
    seeds: Iterable[int],
    nodes: int = 3,
    duration_s: float = 30.0,
    *,
    calm_bound_s: float = DEFAULT_CALM_BOUND_S,
    jobs: int = 1,
    progress: Callable[[SeedResult], None] | None = None,
    keep_timeline: bool = False,
) -> list[SeedResult]:
    """Run ``seeds`` (in order; results in the same order). With ``jobs`` > 1 seeds run in
    worker processes; each seed is still exactly reproducible on its own."""
    run = partial(
        run_raft_seed,
        nodes=nodes,
        duration_s=duration_s,
        calm_bound_s=calm_bound_s,
        keep_timeline=keep_timeline,
    )
    results: list[SeedResult] = []
    seed_list = list(seeds)
    if jobs > 1 and len(seed_list) > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            for result in pool.imap(run, seed_list):
                results.append(result)
                if progress:
                    progress(result)
        return results
    for seed in seed_list:
        result = run(seed)
        results.append(result)
        if progress:
            progress(result)
    return results


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    seeds: int
    nodes: int
    violations: int
    elections: int
    commits: int
    acked: int
    sim_seconds: float
    wall_seconds: float
    """Sum of per-seed wall time (CPU-ish; with jobs > 1 the elapsed time is less)."""
    failing_seeds: tuple[int, ...]
    liveness_max_s: float | None

    @property
    def speed(self) -> float:
        """Simulated cluster-seconds per wall second of one process."""
        return self.sim_seconds / self.wall_seconds if self.wall_seconds else 0.0


def summarize(results: Sequence[SeedResult]) -> Summary:
    lives = [r.liveness_s for r in results if r.liveness_s is not None]
    return Summary(
        seeds=len(results),
        nodes=results[0].nodes if results else 0,
        violations=sum(len(r.violations) for r in results),
        elections=sum(r.elections for r in results),
        commits=sum(r.commits for r in results),
        acked=sum(r.acked for r in results),
        sim_seconds=sum(r.sim_seconds for r in results),
        wall_seconds=sum(r.wall_seconds for r in results),
        failing_seeds=tuple(r.seed for r in results if r.violations),
        liveness_max_s=max(lives) if lives else None,
    )
