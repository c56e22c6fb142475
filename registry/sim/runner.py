"""The one seed runner every simulated application uses.

A run of one seed: every RNG is a child of ``random.Random(seed)`` (``child_rngs``), so a
seed replays exactly and the world's ``trace_digest`` proves it. ``drive`` runs the two
phases — ``duration`` of nemesis, then a calm phase of at most its bound — and turns any
exception escaping the core or the harness (``RaftInvariantError``, an illegal disk
write, a corrupt snapshot) into a violation saying where it was raised. ``run_seeds``
runs many seeds, in order or in worker processes; each result (a ``SeedOutcome``) carries
its violations and the exact command that replays it.

The families (``registry.sim.raft``, ``registry.sim.cluster``) build their harness,
workload and calm phase per seed and report their own figures on top of ``SeedOutcome``.
"""

from __future__ import annotations

import multiprocessing
import random
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar

from registry.sim.engine.world import World


@dataclass(frozen=True, slots=True, kw_only=True)
class SeedOutcome:
    """What every seed reports, whatever ran in it."""

    kind: ClassVar[str] = ""
    """The ``registry sim`` subcommand that replays it."""
    default_calm_bound_s: ClassVar[float] = 0.0

    seed: int
    nodes: int
    duration_s: float
    calm_bound_s: float
    violations: tuple[str, ...]
    sim_seconds: float
    """True simulated time, nemesis plus calm phase."""
    wall_seconds: float
    events: int
    trace_digest: str
    stats: dict[str, int] = field(default_factory=dict)
    timeline: tuple[str, ...] = ()
    """What the nemesis did, for reading a failing seed."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def replay_flags(self) -> str:
        """Flags of the replay command beyond seed, nodes, duration and calm bound."""
        return ""

    def replay_command(self) -> str:
        command = f"registry sim {self.kind} --seed {self.seed} --nodes {self.nodes}"
        command += self.replay_flags() + f" --duration {self.duration_s:g}"
        if self.calm_bound_s != self.default_calm_bound_s:
            command += f" --calm-bound {self.calm_bound_s:g}"
        return command


R = TypeVar("R", bound=SeedOutcome)


def child_rngs(seed: int, count: int) -> list[random.Random]:
    """``count`` independent RNGs drawn, in order, from ``random.Random(seed)``."""
    root = random.Random(seed)
    return [random.Random(root.getrandbits(64)) for _ in range(count)]


class _Led(Protocol):
    @property
    def id(self) -> str: ...


class _HasLeader(Protocol):
    def leader(self) -> _Led | None: ...


def leader_of(sim: _HasLeader) -> Callable[[], str | None]:
    """The nemesis' focus: the id of the sim's current leader, if any."""

    def focus() -> str | None:
        leader = sim.leader()
        return leader.id if leader else None

    return focus


def drive(
    world: World[Any],
    *,
    start: Callable[[], None],
    duration_us: int,
    calm: Callable[[], None],
    calm_bound_us: int,
    end: Callable[[], None] = lambda: None,
) -> list[str]:
    """``start`` (boot, clients, nemesis), run the nemesis phase until ``duration_us``,
    start the ``calm`` phase and run it for at most ``calm_bound_us`` (it stops the world
    once its goal is shown), then ``end``. Returns the escaped exception, as a
    violation, if any: it ends the seed, and is a finding."""
    try:
        start()
        world.run_until(duration_us)
        calm()
        world.run_until(duration_us + calm_bound_us)
        end()
    except Exception as exc:  # any escape is a finding, reported by the caller
        return [describe_exception(world.now_us, exc)]
    return []


def describe_exception(now_us: int, exc: Exception) -> str:
    """One violation line: when, what, and the last frames of ours it passed through."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/registry/" in f.filename] or frames
    where = ", ".join(
        f"{f.filename.rsplit('/registry/', 1)[-1]}:{f.lineno} {f.name}" for f in ours[-3:]
    )
    return f"t={now_us / 1e6:.6f}s - [exception] {type(exc).__name__}: {exc} (in {where})"


def run_seeds(
    run: Callable[[int], R],
    seeds: Iterable[int],
    *,
    jobs: int = 1,
    progress: Callable[[R], None] | None = None,
) -> list[R]:
    """``run`` each seed (results in seed order). With ``jobs`` > 1 seeds run in forked
    worker processes (``run`` must pickle: a module-level function or a ``partial`` of
    one); each seed is still exactly reproducible on its own."""
    seed_list = list(seeds)
    results: list[R] = []
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
class Totals:
    """What every summary of a run of seeds reports (families add their figures)."""

    seeds: int
    nodes: int
    violations: int
    sim_seconds: float
    wall_seconds: float
    """Sum of per-seed wall time (CPU-ish; with jobs > 1 the elapsed time is less)."""
    failing_seeds: tuple[int, ...]


def totals(results: Sequence[SeedOutcome]) -> dict[str, Any]:
    """The ``Totals`` fields of ``results``, as keywords for a family's summary."""
    return {
        "seeds": len(results),
        "nodes": results[0].nodes if results else 0,
        "violations": sum(len(r.violations) for r in results),
        "sim_seconds": sum(r.sim_seconds for r in results),
        "wall_seconds": sum(r.wall_seconds for r in results),
        "failing_seeds": tuple(r.seed for r in results if r.violations),
    }


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0–100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[min(len(ordered), int(rank)) - 1]
