"""``registry sim shell``: the production Driver under virtual time, judged by the checkers.

Output contract (like ``registry sim raft``, without progress lines): a summary on
stdout, every failing seed with its violations and the exact replay command, and with ``--json``
one JSON object as the last stdout line (``seeds``, ``violations``, ``failing_seeds``,
``acked``, ``uncertain``, ``crashes``, ``sim_seconds``, ``wall_seconds``,
``seeds_per_second``, ``trace_hashes``). Exit status 1 when any seed violated a
guarantee. ``--plant NAME`` runs a test-only Ready loop with a planted bug
(``registry.sim.shell.plants``): the run is then expected to fail.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

DEFAULT_SEEDS = 20


def add_parser(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from registry.cli.sim import non_negative_int, positive_int  # sim.py calls us
    from registry.sim.shell.plants import PLANTS

    shell = kinds.add_parser(
        "shell",
        help="the production Driver (Ready loop, storage, ticks) under virtual time",
        description="Run shell simulation seeds: N real Drivers with their Replicas on a "
        "virtual-time event loop, a simulated disk and network, clients registering "
        "names; crashes (some right after an acknowledgement is sent), partitions, loss; "
        "then a heal phase. Checks election safety, state machine safety, durability, "
        "registrations, single activation (G1) and token monotonicity (G2).",
    )
    shell.add_argument(
        "--seeds", type=positive_int, help=f"number of seeds (default {DEFAULT_SEEDS})"
    )
    shell.add_argument(
        "--seed", type=non_negative_int, help="first seed; alone, run exactly this seed"
    )
    shell.add_argument("--nodes", type=positive_int, default=3, help="cluster size (default 3)")
    shell.add_argument("--chaos", type=float, default=None, help="fault phase, simulated s")
    shell.add_argument("--plant", choices=sorted(PLANTS), help="run with a planted shell bug")
    shell.add_argument("--json", action="store_true", help="end stdout with one JSON line")
    shell.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from registry.node.ready_loop import ReadyLoop
    from registry.sim.shell.plants import PLANTS
    from registry.sim.shell.runner import ShellConfig, run_seeds

    first = args.seed if args.seed is not None else 1
    count = (
        args.seeds if args.seeds is not None else (1 if args.seed is not None else DEFAULT_SEEDS)
    )
    cfg = ShellConfig(nodes=args.nodes)
    if args.chaos is not None:
        cfg = replace(cfg, chaos_s=args.chaos)
    plant = PLANTS[args.plant] if args.plant else ReadyLoop
    results, wall = run_seeds(range(first, first + count), cfg, plant=plant)
    failing = [r for r in results if r.violations]
    speed = len(results) / wall if wall > 0 else 0.0
    print(
        f"seeds {len(results)}  violations {sum(len(r.violations) for r in results)}  "
        f"acked {sum(r.acked for r in results)}  uncertain {sum(r.uncertain for r in results)}  "
        f"crashes {sum(r.crashes for r in results)}  wall {wall:.1f}s  ({speed:.1f} seeds/s)"
    )
    for r in failing:
        print(f"seed {r.seed} FAILED (trace {r.trace_hash}):")
        for line in r.violations:
            print(f"  {line}")
        extra = f" --plant {args.plant}" if args.plant else ""
        print(f"  replay: registry sim shell --seed {r.seed} --nodes {args.nodes}{extra}")
    if args.json:
        summary = {
            "seeds": len(results),
            "violations": sum(len(r.violations) for r in results),
            "failing_seeds": [r.seed for r in failing],
            "acked": sum(r.acked for r in results),
            "uncertain": sum(r.uncertain for r in results),
            "crashes": sum(r.crashes for r in results),
            "sim_seconds": round(sum(r.virtual_s for r in results), 3),
            "wall_seconds": round(wall, 3),
            "seeds_per_second": round(speed, 2),
            "trace_hashes": {str(r.seed): r.trace_hash for r in results},
        }
        print(json.dumps(summary))
    sys.stdout.flush()
    return 1 if failing else 0
