"""Client SDK latency against real node processes on loopback, not a test (issue 5).

    .venv/bin/python scripts/bench_client.py [--preset local] [--names 64] [--ops 2000]
        [--addr HOST:PORT ...] [--json out.json]

Starts a 3-node cluster with the harness of ``tests/cluster`` (or uses ``--addr`` of a
running one, e.g. ``make run``), registers ``--names`` echo workers through one ``Client``
and waits until its placement cache knows them all. Then measures, each over ``--ops``
operations:

- ``whereis`` answered from the placement cache;
- ``whereis`` by RPC (``consistent=False`` on a client without a cache, and
  ``consistent=True``, a ReadIndex round);
- ``call`` (16-byte payload, echoed) at concurrency 1 and 64, routed straight to the
  owner by the cache; and, for comparison, a bare gRPC stub that always asks the first
  node, which forwards each call for a name it does not run one hop to the owner.

Prints p50/p99/max in milliseconds and calls per second; ``--json`` writes the table.
Every node, the client and this script share the machine's cores, so the figures are
for comparing changes, not a capacity claim.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import grpc.aio

from registry.client import Client, Registration
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc
from tests.cluster.harness import LocalCluster

PAYLOAD = b"0123456789abcdef"


def _row(label: str, samples: list[float], wall: float) -> dict[str, object]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "op": label,
        "n": len(samples),
        "p50_ms": round(statistics.median(ordered) * 1e3, 3),
        "p99_ms": round(p99 * 1e3, 3),
        "max_ms": round(ordered[-1] * 1e3, 3),
        "ops_per_s": round(len(samples) / wall, 1),
    }


async def _measure(
    label: str, op: Callable[[int], Awaitable[object]], ops: int, concurrency: int
) -> dict[str, object]:
    samples: list[float] = []
    counter = iter(range(ops))

    async def lane() -> None:
        for i in counter:
            started = time.perf_counter()
            await op(i)
            samples.append(time.perf_counter() - started)

    wall_started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return _row(label, samples, time.perf_counter() - wall_started)


async def bench(seeds: list[str], names: int, ops: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    keys = [f"bench/client/{i}" for i in range(names)]
    async with (
        Client(seeds) as client,
        Client(seeds, cache=False) as plain,
        grpc.aio.insecure_channel(seeds[0]) as channel,
    ):
        stub = registry_pb2_grpc.RegistryStub(channel)

        async def bare_call(name: str) -> object:
            return await stub.Call(pb.CallRequest(name=name, payload=PAYLOAD), timeout=10)

        missing = [k for k in keys if await client.whereis(k) is None]
        if missing:
            await client.register_many([Registration(k, "echo") for k in missing])
        deadline = time.monotonic() + 10
        while not all(client.cached(k) for k in keys):
            if time.monotonic() > deadline:
                raise SystemExit("the placement cache did not learn every name in 10 s")
            await asyncio.sleep(0.05)
        for k in keys:  # warm up: every worker running, every channel connected
            await client.call(k, PAYLOAD, idempotent=True)
            await bare_call(k)

        def key(i: int) -> str:
            return keys[i % len(keys)]

        rows.append(
            await _measure("whereis (cache)", lambda i: client.whereis(key(i)), ops * 10, 1)
        )
        rows.append(await _measure("whereis (RPC)", lambda i: plain.whereis(key(i)), ops, 1))
        rows.append(
            await _measure(
                "whereis (RPC, consistent)",
                lambda i: plain.whereis(key(i), consistent=True),
                ops,
                1,
            )
        )
        before = client.stats
        for concurrency in (1, 64):
            rows.append(
                await _measure(
                    f"call c={concurrency} (cache: to owner)",
                    lambda i: client.call(key(i), PAYLOAD),
                    ops,
                    concurrency,
                )
            )
            rows.append(
                await _measure(
                    f"call c={concurrency} (bare stub, one node)",
                    lambda i: bare_call(key(i)),
                    ops,
                    concurrency,
                )
            )
        after = client.stats
        forwarded = after.calls_forwarded - before.calls_forwarded
        print(
            f"cached client: {after.calls - before.calls} calls, {forwarded} forwarded, "
            f"{after.retries - before.retries} retries"
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--addr", action="append", help="use a running cluster (repeatable)")
    parser.add_argument("--preset", default="local", help="timing preset of the cluster")
    parser.add_argument("--names", type=int, default=64, help="echo workers (default 64)")
    parser.add_argument("--ops", type=int, default=2000, help="operations per row")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    cluster: LocalCluster | None = None
    if args.addr:
        seeds = list(args.addr)
    else:
        cluster = LocalCluster(
            Path(tempfile.mkdtemp(prefix="bench-client-")), 3, preset=args.preset
        )
        cluster.start()
        seeds = [n.grpc_addr for n in cluster.nodes.values()]
    try:
        rows = asyncio.run(bench(seeds, args.names, args.ops))
    finally:
        if cluster is not None:
            cluster.close()
    print(f"{'op':<34} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'ops/s':>9}")
    for r in rows:
        print(
            f"{r['op']!s:<34} {r['n']!s:>6} {r['p50_ms']!s:>8} {r['p99_ms']!s:>8} "
            f"{r['max_ms']!s:>8} {r['ops_per_s']!s:>9}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
