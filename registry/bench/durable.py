"""Checkpoint throughput: ``ctx.checkpoint`` through the Raft log, measured.

``python -m registry.bench.durable [--seconds S] [--concurrency C] [--sizes 1024,16384]``
starts a 3-node ``LocalCluster`` (fsync on), registers ``C`` names of kind
``ckpt-bench``, and for each state size keeps ``C`` calls in flight for ``S`` seconds:
each call makes its worker take one checkpoint of that size, then answer. The same run
with size 0 and no checkpoint (``noop``) is the baseline of a plain call. It prints,
per size, checkpoints/s and latency p50/p99, and the cost per KiB (the slope of the
time per checkpoint between the smallest and the largest size).

The worker class lives here so that the nodes can load it (``--worker-module
registry.bench.durable``); the driver imports its heavy parts only in ``main``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from registry.worker import Context, Worker

if TYPE_CHECKING:
    from registry.testing.local_cluster import LocalCluster


class CheckpointBench(Worker):
    """``<n>`` → checkpoint ``n`` bytes, answer ``b""``; ``noop`` → answer at once."""

    kind: ClassVar[str] = "ckpt-bench"

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        if payload != b"noop":
            await self.ctx.checkpoint(b"x" * int(payload))
        return b""


async def drive(
    addresses: dict[str, str], seconds: float, payload: bytes
) -> tuple[int, list[float], dict[str, int]]:
    import grpc.aio

    from registry.v1 import registry_pb2 as pb
    from registry.v1 import registry_pb2_grpc

    channels = {a: grpc.aio.insecure_channel(a) for a in set(addresses.values())}
    stubs = {n: registry_pb2_grpc.RegistryStub(channels[a]) for n, a in addresses.items()}
    latencies: list[float] = []
    errors: list[str] = []
    end = time.monotonic() + seconds

    async def one(name: str) -> None:
        stub = stubs[name]
        while time.monotonic() < end:
            t0 = time.perf_counter()
            try:
                await stub.Call(pb.CallRequest(name=name, payload=payload), timeout=10)
            except grpc.aio.AioRpcError as exc:  # counted, not timed: a lease lost under load
                errors.append(kind_of(exc.details() or exc.code().name))
                await asyncio.sleep(0.1)
                continue
            latencies.append(time.perf_counter() - t0)

    try:
        await asyncio.gather(*(one(n) for n in addresses))
    finally:
        for channel in channels.values():
            await channel.close()
    return len(latencies), latencies, dict(Counter(errors))


def owner_addresses(c: LocalCluster, names: list[str]) -> dict[str, str]:
    """Each name's owner's gRPC address, once placed: calls go there with no hop."""
    from registry.testing.local_cluster import wait_for

    addresses: dict[str, str] = {}
    for name in names:

        def placed(n: str = name) -> str | None:
            return c.owner(n)[0] or None

        addresses[name] = c.nodes[wait_for(f"{name} placed", placed, 30)].grpc_addr
    return addresses


def kind_of(details: str) -> str:
    """An error message without the names and nodes in it, to count errors by kind."""
    return re.sub(r"'[^']*'|\bn\d+\b|\(.*", "_", details).strip()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    from registry.testing.local_cluster import LocalCluster
    from registry.v1 import registry_pb2 as pb

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sizes", default="1024,16384,65536")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as root:
        c = LocalCluster(Path(root), 3, preset="local", worker_modules=("registry.bench.durable",))
        try:
            c.start(timeout=60)
            names = [f"bench/ckpt/{i}" for i in range(args.concurrency)]
            specs = [pb.NameSpec(name=n, kind="ckpt-bench") for n in names]
            c.stub(c.ids[0]).RegisterMany(pb.RegisterManyRequest(specs=specs), timeout=10)
            addresses = owner_addresses(c, names)
            rows = []
            for label, payload in [("noop", b"noop"), *((str(s), str(s).encode()) for s in sizes)]:
                count, lat, errors = asyncio.run(drive(addresses, args.seconds, payload))
                rows.append(
                    {
                        "state_bytes": label,
                        "per_s": round(count / args.seconds, 1),
                        "p50_ms": round(_pct(lat, 0.5) * 1000, 2),
                        "p99_ms": round(_pct(lat, 0.99) * 1000, 2),
                        "errors": errors,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            small, large = rows[1], rows[-1]
            if large is not small:
                per_small = 1 / float(small["per_s"])
                per_large = 1 / float(large["per_s"])
                kib = (int(large["state_bytes"]) - int(small["state_bytes"])) / 1024
                print(
                    json.dumps({"cost_per_kib_us": round((per_large - per_small) / kib * 1e6, 2)})
                )
        finally:
            c.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
