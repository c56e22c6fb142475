"""Time how long a fresh client's placement cache takes to learn every name.

Usage: ``python scripts/measure_watch_listing.py [--names 30000] [--nodes 3]``. Starts a
``LocalCluster`` in a temporary directory, registers ``--names`` counters with
``register_many`` in chunks of 1000, waits until every one runs, then starts a new
``Client`` (``--runs`` times) and reports the seconds until its cache knows the last name.
The figure depends on the machine's load; compare runs made under the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from registry import Client, Registration
from registry.testing.local_cluster import LocalCluster

CHUNK = 1000


async def _fill(address: str, names: list[str], deadline_s: float) -> None:
    async with Client(address, timeout=60.0, cache=False) as client:
        for start in range(0, len(names), CHUNK):
            chunk = names[start : start + CHUNK]
            await client.register_many(Registration(n, "counter") for n in chunk)
        deadline = time.monotonic() + deadline_s
        while True:
            status = await client.cluster()
            running = sum(m.activations for m in status.members)
            if running >= len(names):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"only {running} of {len(names)} names run after {deadline_s} s")
            await asyncio.sleep(0.5)


async def _time_listing(address: str, last: str, deadline_s: float) -> float:
    """Seconds from ``connect()`` until the synced cache knows ``last`` (sorted last, so
    the listing is complete)."""
    client = Client(address, timeout=60.0)
    try:
        started = time.monotonic()
        await client.connect()
        while client.cached(last) is None:
            if time.monotonic() - started > deadline_s:
                raise SystemExit(f"the cache did not learn {last!r} within {deadline_s} s")
            await asyncio.sleep(0.01)
        return time.monotonic() - started
    finally:
        await client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--names", type=int, default=30_000, help="names to register")
    parser.add_argument("--nodes", type=int, default=3, help="cluster size")
    parser.add_argument("--runs", type=int, default=3, help="fresh clients timed in turn")
    ns = parser.parse_args(argv)
    names = [f"w{i:06d}" for i in range(ns.names)]
    with (
        tempfile.TemporaryDirectory(prefix="watch-listing-") as tmp,
        LocalCluster(Path(tmp), ns.nodes, preset="local", log_level="WARNING") as cluster,
    ):
        cluster.start(timeout=60.0)
        address = cluster.nodes[cluster.wait_ready()].grpc_addr
        fill_started = time.monotonic()
        asyncio.run(_fill(address, names, deadline_s=600.0))
        filled = time.monotonic() - fill_started
        print(f"{ns.names} names registered and running in {filled:.1f} s")
        for run in range(ns.runs):
            known = asyncio.run(_time_listing(address, names[-1], deadline_s=600.0))
            print(f"run {run + 1}: a fresh client's cache knew every name after {known:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
