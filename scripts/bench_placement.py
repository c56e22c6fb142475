"""Wall time of placing many names (``registry.core.placement``), not a test.

    .venv/bin/python scripts/bench_placement.py [--names 100000] [--members 5 50]

For each member count it places every name twice with one ``Placement`` and one epoch:
the first pass builds the ring(s), the second reuses the cache. A third pass mixes
roles/kinds (several rings per epoch) to show the cost of eligibility keys. "ring build"
is what one new epoch costs before the first name is placed.
"""

from __future__ import annotations

import argparse
import time

from registry.core.commands import NameSpec
from registry.core.placement import DEFAULT_VNODES, Candidate, Placement


def members(count: int) -> dict[str, Candidate]:
    return {
        f"n{i}": Candidate(
            node=f"n{i}",
            roles=frozenset({"web"} if i % 2 else {"web", "gpu"}),
            kinds=frozenset(),
            up=True,
        )
        for i in range(count)
    }


def timed(placement: Placement, specs: list[NameSpec], view: dict[str, Candidate]) -> float:
    start = time.perf_counter()
    for spec in specs:
        placement.owner(spec, view, 1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", type=int, default=100_000)
    parser.add_argument("--members", type=int, nargs="+", default=[5, 50])
    parser.add_argument("--vnodes", type=int, default=DEFAULT_VNODES)
    args = parser.parse_args()

    plain = [NameSpec(name=f"name-{i}", kind="k") for i in range(args.names)]
    mixed = [
        NameSpec(name=f"name-{i}", kind=f"k{i % 3}", roles=("gpu",) if i % 4 == 0 else ())
        for i in range(args.names)
    ]
    print(f"{args.names} names, vnodes={args.vnodes}")
    print(
        f"{'members':>8} {'ring build':>11} {'first pass':>11} {'cached pass':>12} "
        f"{'mixed roles':>12} {'µs/name':>8}"
    )
    for count in args.members:
        view = members(count)
        start = time.perf_counter()
        Placement(vnodes=args.vnodes).owner(plain[0], view, 1)
        build = time.perf_counter() - start
        placement = Placement(vnodes=args.vnodes)
        first = timed(placement, plain, view)
        cached = timed(placement, plain, view)
        mixed_s = timed(Placement(vnodes=args.vnodes), mixed, view)
        per_name = cached / args.names * 1e6
        print(
            f"{count:>8} {build * 1e3:>9.1f}ms {first:>10.3f}s {cached:>11.3f}s "
            f"{mixed_s:>11.3f}s {per_name:>8.2f}"
        )


if __name__ == "__main__":
    main()
