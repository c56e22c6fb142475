"""``registry sim raft`` and ``registry sim cluster``: run deterministic simulation seeds
and report violations.

Output contract (scripts and CI rely on it), the same for both kinds:

- progress lines go to stderr, one every few seeds;
- a summary table goes to stdout; with ``--json`` the *last* stdout line is one JSON
  object;
- every failing seed is printed with its violations and the exact replay command;
- exit status 1 when any seed violated a guarantee, 0 otherwise.

``raft`` JSON: ``seeds``, ``nodes``, ``violations``, ``elections``, ``commits``,
``acked``, ``sim_seconds``, ``wall_seconds``, ``speed``, ``liveness_max_s``,
``failing_seeds``, ``replay``.

``cluster`` JSON: ``seeds``, ``nodes``, ``names``, ``violations``, ``duplicates``,
``lost_registrations``, ``stale_tokens``, ``failover_samples``, ``failover_cancelled``,
``failover_p50_s``/``p90``/``p99``/``max``, ``failover_leader_samples``,
``failover_leader_p99_s``, ``heal_converge_p50_s``/``p90``/``p99``/``max``, ``starts``,
``handoffs``, ``checkpoints`` (``applied``, ``refused_stale``, ``restores``),
``failovers``, ``sim_seconds``, ``wall_seconds``, ``failing_seeds``, ``replay``.

The simulator is imported only when a ``sim`` command runs (other commands start
faster); both kinds go through the one seed runner (``registry.sim.runner``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from registry.sim.cluster.runner import ClusterSummary
    from registry.sim.raft.runner import Summary
    from registry.sim.runner import SeedOutcome

DEFAULT_SEEDS = 20
R = TypeVar("R", bound="SeedOutcome")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = commands.add_parser(
        "sim", help="deterministic cluster simulation", description="Deterministic simulation."
    )
    kinds = sim.add_subparsers(dest="sim_kind", metavar="KIND", required=True)
    raft = kinds.add_parser(
        "raft",
        help="Raft core under a nemesis, judged by safety and liveness checkers",
        description="Run Raft simulation seeds: 3 or 5 nodes under partitions, crashes, "
        "pauses, loss and clock drift; then a calm phase that must show liveness.",
    )
    raft.add_argument(
        "--seeds", type=positive_int, help=f"number of seeds (default {DEFAULT_SEEDS})"
    )
    raft.add_argument(
        "--seed", type=non_negative_int, help="first seed; alone, run exactly this seed"
    )
    raft.add_argument("--nodes", type=_node_count, default=3, help="cluster size (default 3)")
    raft.add_argument(
        "--duration", type=_positive_float, default=30.0, help="nemesis phase, simulated s"
    )
    raft.add_argument(
        "--calm-bound", type=_positive_float, default=10.0, help="liveness bound, simulated s"
    )
    raft.add_argument("--jobs", type=positive_int, default=1, help="worker processes")
    raft.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    raft.add_argument(
        "--verbose",
        action="store_true",
        help="print the nemesis timeline of failing seeds (and stats of a single seed)",
    )
    raft.set_defaults(handler=run_raft)
    cluster = kinds.add_parser(
        "cluster",
        help="registry nodes with workers under a nemesis, judged by the G1–G5 checkers",
        description="Run registry cluster simulation seeds: Replicas with model worker "
        "runtimes, clients registering names and calling counters, partitions (bridge and "
        "one-way included), crashes, pauses, loss and clock drift; then a heal phase that "
        "must converge. Checks G1 single activation, G2 fencing, G3 durability, G4 "
        "failover latency and G5 heal.",
    )
    cluster.add_argument(
        "--seeds", type=positive_int, help=f"number of seeds (default {DEFAULT_SEEDS})"
    )
    cluster.add_argument(
        "--seed", type=non_negative_int, help="first seed; alone, run exactly this seed"
    )
    cluster.add_argument("--nodes", type=_node_count, default=5, help="cluster size (default 5)")
    cluster.add_argument(
        "--names", type=positive_int, default=200, help="names the clients use (default 200)"
    )
    cluster.add_argument(
        "--duration", type=_positive_float, default=30.0, help="nemesis phase, simulated s"
    )
    cluster.add_argument(
        "--calm-bound",
        type=_positive_float,
        default=30.0,
        help="heal-convergence bound, simulated s (default 30)",
    )
    cluster.add_argument(
        "--jobs", type=positive_int, help="worker processes (default: one per CPU)"
    )
    cluster.add_argument(
        "--transfers",
        action="store_true",
        help="the leader also hands leadership over now and then (off: seeds as before)",
    )
    cluster.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    cluster.add_argument(
        "--verbose", action="store_true", help="print the nemesis timeline of failing seeds"
    )
    cluster.set_defaults(handler=run_cluster)
    from registry.cli.sim_shell import add_parser as add_shell_parser

    add_shell_parser(kinds)


def run_raft(args: argparse.Namespace) -> int:
    from registry.sim.raft.runner import run_raft_seed, summarize

    results, elapsed = _run_seeds(args, run_raft_seed, jobs=args.jobs)
    summary = summarize(results)
    _print_raft_table(summary, elapsed)
    if len(results) == 1:
        only = results[0]
        print(f"trace digest {only.trace_digest}; liveness {_seconds(only.liveness_s)}")
    return _finish(args, results, lambda failing: _raft_json(summary, elapsed, failing))


def run_cluster(args: argparse.Namespace) -> int:
    from registry.sim.cluster.runner import run_cluster_seed, summarize

    jobs = args.jobs or os.cpu_count() or 1
    results, elapsed = _run_seeds(
        args, run_cluster_seed, jobs=jobs, names=args.names, transfers=args.transfers
    )
    summary = summarize(results)
    _print_cluster_table(summary, elapsed)
    if len(results) == 1:
        only = results[0]
        print(f"shape: {only.shape}; trace digest {only.trace_digest}")
    return _finish(args, results, lambda failing: _cluster_json(summary, elapsed, failing))


def _run_seeds(
    args: argparse.Namespace, run_seed: Callable[..., R], *, jobs: int, **options: object
) -> tuple[list[R], float]:
    """Run the seeds the flags name through the one runner, with progress on stderr;
    the results and the elapsed wall time."""
    from registry.sim.runner import run_seeds

    seeds = _seed_range(args.seed, args.seeds)
    progress = _Progress(len(seeds))
    run = partial(
        run_seed,
        nodes=args.nodes,
        duration_s=args.duration,
        calm_bound_s=args.calm_bound,
        keep_timeline=args.verbose and len(seeds) == 1,
        **options,
    )
    results = run_seeds(run, seeds, jobs=jobs, progress=progress)
    return results, time.perf_counter() - progress.start


def _finish(
    args: argparse.Namespace,
    results: Sequence[SeedOutcome],
    summary_json: Callable[[list[SeedOutcome]], dict[str, object]],
) -> int:
    """The part of the report both kinds share: a single seed's stats and timeline, every
    failing seed with its replay command, the JSON line, the exit status."""
    if len(results) == 1 and args.verbose:
        only = results[0]
        print("stats: " + ", ".join(f"{k} {v}" for k, v in sorted(only.stats.items())))
        if not only.violations:
            print("nemesis timeline:", *(f"  {line}" for line in only.timeline), sep="\n")
    failing = [r for r in results if r.violations]
    for result in failing:
        _print_failure(result, verbose=args.verbose or len(results) == 1)
    if args.json:
        print(json.dumps(summary_json(failing), sort_keys=True))
    return 1 if failing else 0


def _seed_range(first: int | None, count: int | None) -> list[int]:
    if first is not None and count is None:
        return [first]
    start = first or 0
    return list(range(start, start + (count or DEFAULT_SEEDS)))


class _Progress:
    """One stderr line every few seeds: done, violations so far, throughput."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.every = max(1, min(10, total // 10))
        self.start = time.perf_counter()
        self.done = 0
        self.violations = 0
        self.failing = 0
        self.sim_seconds = 0.0

    def __call__(self, result: SeedOutcome) -> None:
        self.done += 1
        self.violations += len(result.violations)
        self.failing += bool(result.violations)
        self.sim_seconds += result.sim_seconds
        if self.done % self.every and self.done != self.total:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        print(
            f"[{self.done:>{len(str(self.total))}}/{self.total}] "
            f"violations {self.violations} in {self.failing} seeds, "
            f"{self.sim_seconds / elapsed:,.0f} cluster-s/wall-s, {elapsed:.1f}s elapsed",
            file=sys.stderr,
            flush=True,
        )


def _print_row(headers: Sequence[str], row: Sequence[str]) -> None:
    widths = [max(len(h), len(v)) for h, v in zip(headers, row, strict=True)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))


def _print_raft_table(summary: Summary, elapsed: float) -> None:
    speed = summary.sim_seconds / elapsed if elapsed > 0 else 0.0
    headers = (
        "seeds",
        "nodes",
        "violations",
        "elections",
        "commits",
        "simulated s",
        "wall s",
        "cluster-s/wall-s",
    )
    row = (
        str(summary.seeds),
        str(summary.nodes),
        str(summary.violations),
        str(summary.elections),
        str(summary.commits),
        f"{summary.sim_seconds:,.1f}",
        f"{elapsed:,.1f}",
        f"{speed:,.1f}",
    )
    _print_row(headers, row)
    print(f"slowest liveness in the calm phase: {_seconds(summary.liveness_max_s)}")


def _print_cluster_table(summary: ClusterSummary, elapsed: float) -> None:
    from registry.sim.runner import percentile

    failover, heal, leader = summary.failover, summary.heal, summary.failover_leader
    headers = (
        "seeds",
        "nodes",
        "violations",
        "duplicates",
        "lost regs",
        "stale tokens",
        "failover p50/p99",
        "heal p99",
        "wall s",
    )
    row = (
        str(summary.seeds),
        str(summary.nodes),
        str(summary.violations),
        str(summary.duplicates),
        str(summary.lost_registrations),
        str(summary.stale_tokens),
        f"{_seconds(percentile(failover, 50))}/{_seconds(percentile(failover, 99))}",
        _seconds(percentile(heal, 99)),
        f"{elapsed:,.1f}",
    )
    _print_row(headers, row)
    starts = ", ".join(f"{k} {v}" for k, v in sorted(summary.starts.items()))
    print(
        f"failover: {len(failover)} samples ({summary.failover_cancelled} cancelled), p90 "
        f"{_seconds(percentile(failover, 90))}, max {_seconds(percentile(failover, 100))}; "
        f"leader lost: p50 {_seconds(percentile(leader, 50))}, p99 "
        f"{_seconds(percentile(leader, 99))}"
    )
    print(
        f"heal convergence: p50 {_seconds(percentile(heal, 50))}, p90 "
        f"{_seconds(percentile(heal, 90))}, max {_seconds(percentile(heal, 100))}"
    )
    print(f"activations by start reason: {starts}; simulated {summary.sim_seconds:,.1f}s")
    c = summary.checkpoints
    print(
        f"checkpoints: {c['applied']:,} kept by the log, {c['refused_stale']:,} refused there "
        f"as stale, {c['restores']:,} failover/restart starts restored one"
    )
    r = summary.reminders
    print(
        f"reminders: {r['fired']:,} firings, {r['duplicates']:,} duplicates (at most "
        f"{r['max_firings']} of one period), {r['caught_up']:,} periods caught up at a start "
        f"(latest {r['max_late_ms'] / 1000:.3f}s after it was due)"
    )


def _print_failure(result: SeedOutcome, *, verbose: bool) -> None:
    shape = getattr(result, "shape", "")
    label = f"seed {result.seed}" + (f" ({shape})" if shape else "")
    print(f"\n{label}: {len(result.violations)} violation(s)")
    for line in result.violations:
        print(f"  {line}")
    if verbose and result.timeline:
        print("  nemesis timeline:")
        for line in result.timeline:
            print(f"    {line}")
    print(f"  replay: {result.replay_command()}")


def _raft_json(summary: Summary, elapsed: float, failing: list[SeedOutcome]) -> dict[str, object]:
    return {
        "seeds": summary.seeds,
        "nodes": summary.nodes,
        "violations": summary.violations,
        "elections": summary.elections,
        "commits": summary.commits,
        "acked": summary.acked,
        "sim_seconds": round(summary.sim_seconds, 6),
        "wall_seconds": round(elapsed, 3),
        "speed": round(summary.sim_seconds / elapsed, 1) if elapsed > 0 else 0.0,
        "liveness_max_s": summary.liveness_max_s,
        "failing_seeds": list(summary.failing_seeds),
        "replay": [r.replay_command() for r in failing],
    }


def _cluster_json(
    summary: ClusterSummary, elapsed: float, failing: list[SeedOutcome]
) -> dict[str, object]:
    from registry.sim.runner import percentile

    failover, heal = summary.failover, summary.heal
    out: dict[str, object] = {
        "seeds": summary.seeds,
        "nodes": summary.nodes,
        "names": summary.names,
        "violations": summary.violations,
        "duplicates": summary.duplicates,
        "lost_registrations": summary.lost_registrations,
        "stale_tokens": summary.stale_tokens,
        "failover_samples": len(failover),
        "failover_cancelled": summary.failover_cancelled,
        "failover_leader_samples": len(summary.failover_leader),
        "failover_leader_p99_s": _rounded(percentile(summary.failover_leader, 99)),
        "starts": dict(sorted(summary.starts.items())),
        "handoffs": summary.handoffs,
        "checkpoints": summary.checkpoints,
        "reminders": summary.reminders,
        "failovers": summary.starts.get("failover", 0),
        "sim_seconds": round(summary.sim_seconds, 3),
        "wall_seconds": round(elapsed, 3),
        "failing_seeds": list(summary.failing_seeds),
        "replay": [r.replay_command() for r in failing],
    }
    for label, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        out[f"failover_{label}_s"] = _rounded(percentile(failover, q))
        out[f"heal_converge_{label}_s"] = _rounded(percentile(heal, q))
    return out


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1 (got {value})")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0 (got {value})")
    return value


def _node_count(text: str) -> int:
    value = int(text)
    if not 3 <= value <= 9:
        raise argparse.ArgumentTypeError(f"nodes must be between 3 and 9 (got {value})")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0 (got {value})")
    return value
