"""``registry jepsen``: real node processes in network namespaces under a random nemesis.

Needs root, ``ip`` and ``nft`` (see ``registry.testing.netns``). Output contract:

- progress lines (one per fault) go to stderr;
- a report goes to stdout; with ``--json`` the *last* stdout line is one JSON object with
  ``faults_by_kind``, ``faults``, ``operations``, ``duplicates``,
  ``stale_writes_accepted``, ``lost_registrations``, ``failover_p50_s``,
  ``failover_p99_s``, ``failover_max_s``, ``heal_converge_p99_s``, ``seed``, ``ok``, …;
- exit status 1 when a guarantee was violated (the run's files are kept and named),
  2 when the run could not start, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPORT_KEYS = (
    "faults",
    "operations",
    "operations_ok",
    "names",
    "activations",
    "duplicates",
    "paused_overlaps",
    "resume_overlaps",
    "elections",
    "split_brains",
    "stale_writes_accepted",
    "rejected_writes",
    "token_regressions",
    "lost_registrations",
    "resurrected",
    "calls_answered",
    "calls_unexplained",
    "failover_samples",
    "failover_missing",
    "failover_p50_s",
    "failover_p99_s",
    "failover_max_s",
    "heal_samples",
    "heal_unconverged",
    "heal_converge_p50_s",
    "heal_converge_p99_s",
    "heal_converge_max_s",
    "heal_partition_p99_s",
    "handoffs",
    "state_continuity_violations",
    "handoff_state_lost",
    "collateral_fences",
    "minority_probes",
    "minority_violations",
    "register_to_running_p99_s",
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "jepsen",
        help="randomized partition/crash/pause run on real processes (needs root)",
        description="Run N real nodes, each in its own network namespace on a private "
        "bridge, register names served by a ledger worker, inject faults (nftables drops, "
        "kill -9, SIGSTOP, restarts) drawn from a seeded schedule, and check the ledger "
        "for duplicates, stale writes, lost registrations, failover and heal times.",
    )
    p.add_argument("--nodes", type=int, default=5, choices=(3, 5), help="cluster size")
    p.add_argument("--time", type=float, default=60.0, help="seconds of faults (default 60)")
    p.add_argument("--names", type=int, default=1000, help="names to register (default 1000)")
    p.add_argument("--nemesis", default="all", help="'all' or a comma-separated list of kinds")
    p.add_argument("--seed", type=int, help="schedule seed (default: random, printed)")
    p.add_argument("--preset", default="lan", choices=("local", "lan", "wan"))
    p.add_argument("--max-faults", type=int, help="stop after this many scheduled faults")
    p.add_argument("--dir", type=Path, help="keep data, logs and the ledger here")
    p.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    p.set_defaults(handler=run_jepsen)


def run_jepsen(args: argparse.Namespace) -> int:
    from registry.testing.jepsen import JepsenConfig, run
    from registry.testing.nemesis import parse_kinds
    from registry.testing.netns import missing_requirements

    problem = missing_requirements()
    if problem:
        print(f"error: registry jepsen {problem}", file=sys.stderr)
        return 2
    try:
        kinds = parse_kinds(args.nemesis)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.names < 1 or args.time <= 0:
        print("error: --names must be ≥ 1 and --time > 0", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(f"registry jepsen: seed {seed}", file=sys.stderr, flush=True)
    cfg = JepsenConfig(
        nodes=args.nodes,
        time_s=args.time,
        names=args.names,
        nemesis=kinds,
        seed=seed,
        preset=args.preset,
        root=args.dir,
        keep=args.dir is not None,
        max_faults=args.max_faults,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    outcome = run(cfg)
    rep = outcome.report
    data = rep.as_dict()
    print(
        f"jepsen: {args.nodes} nodes, preset {args.preset}, seed {seed}, "
        f"{outcome.duration_s:.0f} s wall"
    )
    print("faults by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(rep.faults_by_kind.items())))
    for key in REPORT_KEYS:
        print(f"  {key:<28} {data[key]}")
    for line in rep.failover_slowest:
        print(f"  slowest failover: {line}")
    if outcome.node_crashes:
        print(f"  node processes that exited on their own: {outcome.node_crashes}")
    for line in rep.examples:
        print(f"  ! {line}")
    for miss in rep.target_misses():
        print(f"  missed: {miss} (DESIGN §5; not a violation, but worth a replay)")
    verdict = "OK" if rep.ok else "VIOLATIONS FOUND"
    replay = f"registry jepsen --nodes {args.nodes} --time {args.time:g} --names {args.names} "
    replay += f"--nemesis {args.nemesis} --preset {args.preset} --seed {seed}"
    print(f"{verdict}; replay: {replay}")
    if not rep.ok:
        print(f"  ledger and logs kept in {outcome.root}")
    if args.json:
        data.update(
            seed=seed, wall_s=round(outcome.duration_s, 1), node_crashes=outcome.node_crashes
        )
        data["root"] = str(outcome.root) if not rep.ok or args.dir else None
        print(json.dumps(data, sort_keys=True))
    return 0 if rep.ok else 1
