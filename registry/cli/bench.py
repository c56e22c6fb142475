"""``registry bench``: start local clusters, measure, print a table, write JSON.

Output contract: progress lines (at most one every ~2 s per step) go to stderr; the
table goes to stdout at the end; ``--json FILE`` gets every figure with its unit, the
targets, machine info, parameters and timestamps. Exit status 0 when every section ran
(targets missed or not: benchmarks are not tests), 1 when a section failed, 2 for bad
usage.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from types import FrameType


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from registry.bench.params import SECTIONS

    p = commands.add_parser(
        "bench",
        help="benchmark a local cluster (throughput, latency, failover, memory) vs references",
        description="Start local node processes on loopback and measure registration "
        "throughput, whereis and call latency, failover, rebalance and heal, memory and "
        "disk per name; measure a raw grpc.aio echo and a 3-member etcd cluster in the "
        "same run as references. Progress on stderr, a table on stdout.",
    )
    p.add_argument(
        "--quick", action="store_true", help="smaller run (10k names, 2k ops, 3 failovers)"
    )
    p.add_argument("--nodes", type=int, default=3, help="nodes of the main cluster (default 3)")
    p.add_argument("--names", type=int, help="names per registration run (100000; quick 10000)")
    p.add_argument("--ops", type=int, help="operations per latency row (10000; quick 2000)")
    p.add_argument("--failover-runs", type=int, help="kill -9 rounds (10; quick 3)")
    p.add_argument(
        "--preset",
        default="lan",
        choices=("local", "lan", "wan"),
        help="timing preset of every cluster (default lan: the failover target is for lan)",
    )
    p.add_argument(
        "--budget",
        type=float,
        help="seconds one measured run may take before it stops early (300; quick 30)",
    )
    p.add_argument("--skip-etcd", action="store_true", help="do not run the etcd reference")
    p.add_argument(
        "--no-fsync",
        action="store_true",
        help="run every cluster and etcd without fsync (NOT durable: shows where time goes)",
    )
    p.add_argument(
        "--only",
        help=f"comma-separated sections to run, from: {', '.join(SECTIONS)}",
    )
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--dir", type=Path, help="keep data directories and node logs here")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    from registry.bench import params as defaults
    from registry.bench.load import Progress
    from registry.bench.params import SECTIONS, Params
    from registry.bench.runner import run

    sections: tuple[str, ...] = SECTIONS
    if args.only:
        sections = tuple(s for s in SECTIONS if s in {x.strip() for x in args.only.split(",")})
        unknown = sorted({x.strip() for x in args.only.split(",")} - set(SECTIONS))
        if unknown:
            print(
                f"registry bench: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}",
                file=sys.stderr,
            )
            return 2
    if args.skip_etcd:
        sections = tuple(s for s in sections if s != "etcd")
    quick = args.quick
    try:
        params = Params(
            nodes=args.nodes,
            names=args.names or (defaults.QUICK_NAMES if quick else defaults.FULL_NAMES),
            ops=args.ops or (defaults.QUICK_OPS if quick else defaults.FULL_OPS),
            failover_runs=args.failover_runs
            or (defaults.QUICK_FAILOVER_RUNS if quick else defaults.FULL_FAILOVER_RUNS),
            preset=args.preset,
            budget_s=args.budget or (defaults.QUICK_BUDGET_S if quick else defaults.FULL_BUDGET_S),
            sections=sections,
            work_dir=args.dir,
            keep=args.dir is not None,
            quick=quick,
            fsync=not args.no_fsync,
        ).validate()
    except ValueError as exc:
        print(f"registry bench: {exc}", file=sys.stderr)
        return 2
    if args.json is not None and not args.json.parent.is_dir():
        print(f"registry bench: directory {args.json.parent} does not exist", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so every cluster and etcd the run started is stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    doc, table = run(params, Progress(quiet=args.quiet))
    print(table, flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0 if doc["ok"] else 1


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")
