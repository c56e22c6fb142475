"""``registry sim cluster``: run registry cluster seeds and report G1–G5.

Same output contract as ``registry sim raft``: progress on stderr, a summary table on
stdout, every failing seed with its violations and replay command, and with ``--json``
one JSON object as the last stdout line — ``seeds``, ``nodes``, ``names``,
``violations``, ``duplicates``, ``lost_registrations``, ``stale_tokens``,
``failover_samples``, ``failover_p50_s``/``p90``/``p99``/``max``,
``failover_leader_p99_s``, ``heal_converge_p50_s``/``p90``/``p99``/``max``, ``starts``,
``handoffs``, ``failovers``, ``sim_seconds``, ``wall_seconds``, ``failing_seeds``,
``replay``. Exit status 1 when any seed violated a guarantee.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from registry.cli.sim import _Progress, _seed_range
from registry.sim.cluster.runner import (
    ClusterSeedResult,
    ClusterSummary,
    run_cluster_seeds,
    summarize,
)
from registry.sim.runner import percentile


def run(args: argparse.Namespace) -> int:
    seeds = _seed_range(args.seed, args.seeds)
    progress = _Progress(len(seeds))
    results = run_cluster_seeds(
        seeds,
        nodes=args.nodes,
        names=args.names,
        duration_s=args.duration,
        calm_bound_s=args.calm_bound,
        jobs=args.jobs or os.cpu_count() or 1,
        progress=progress,
        keep_timeline=args.verbose and len(seeds) == 1,
    )
    elapsed = time.perf_counter() - progress.start
    summary = summarize(results)
    _print_table(summary, elapsed)
    if len(results) == 1:
        only = results[0]
        print(f"shape: {only.shape}; trace digest {only.trace_digest}")
        if args.verbose:
            print("stats: " + ", ".join(f"{k} {v}" for k, v in sorted(only.stats.items())))
            if not only.violations:
                print("nemesis timeline:", *(f"  {line}" for line in only.timeline), sep="\n")
    failing = [r for r in results if r.violations]
    for result in failing:
        _print_failure(result, verbose=args.verbose or len(results) == 1)
    if args.json:
        print(json.dumps(json_summary(summary, elapsed, failing), sort_keys=True))
    return 1 if failing else 0


def _s(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


def _print_table(summary: ClusterSummary, elapsed: float) -> None:
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
        f"{_s(percentile(summary.failover, 50))}/{_s(percentile(summary.failover, 99))}",
        _s(percentile(summary.heal, 99)),
        f"{elapsed:,.1f}",
    )
    widths = [max(len(h), len(v)) for h, v in zip(headers, row, strict=True)]
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    starts = ", ".join(f"{k} {v}" for k, v in sorted(summary.starts.items()))
    print(
        f"failover: {len(summary.failover)} samples ({summary.failover_cancelled} cancelled), p90 "
        f"{_s(percentile(summary.failover, 90))}, max {_s(percentile(summary.failover, 100))}; "
        f"leader lost: p50 {_s(percentile(summary.failover_leader, 50))}, p99 "
        f"{_s(percentile(summary.failover_leader, 99))}"
    )
    print(
        f"heal convergence: p50 {_s(percentile(summary.heal, 50))}, p90 "
        f"{_s(percentile(summary.heal, 90))}, max {_s(percentile(summary.heal, 100))}"
    )
    print(f"activations by start reason: {starts}; simulated {summary.sim_seconds:,.1f}s")


def _print_failure(result: ClusterSeedResult, *, verbose: bool) -> None:
    print(f"\nseed {result.seed} ({result.shape}): {len(result.violations)} violation(s)")
    for line in result.violations:
        print(f"  {line}")
    if verbose and result.timeline:
        print("  nemesis timeline:")
        for line in result.timeline:
            print(f"    {line}")
    print(f"  replay: {result.replay_command()}")


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def json_summary(
    summary: ClusterSummary, elapsed: float, failing: list[ClusterSeedResult]
) -> dict[str, object]:
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
        "failover_leader_p99_s": _r(percentile(summary.failover_leader, 99)),
        "starts": dict(sorted(summary.starts.items())),
        "handoffs": summary.handoffs,
        "failovers": summary.starts.get("failover", 0),
        "sim_seconds": round(summary.sim_seconds, 3),
        "wall_seconds": round(elapsed, 3),
        "failing_seeds": list(summary.failing_seeds),
        "replay": [r.replay_command() for r in failing],
    }
    for label, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        out[f"failover_{label}_s"] = _r(percentile(failover, q))
        out[f"heal_converge_{label}_s"] = _r(percentile(heal, q))
    return out
