"""The ``durable`` section: checkpoint throughput and activation on first call.

On its own cluster (its nodes also load ``registry.bench.durable``'s ``ckpt-bench``
worker), reusing that module's worker and driver:

- **checkpoints**: ``CONCURRENCY`` names, each call makes its worker take one checkpoint
  of ``STATE_BYTES`` (replicated through the Raft log and fsync'd before
  ``ctx.checkpoint`` returns), ``CONCURRENCY`` calls in flight for ``seconds(params)``;
  checkpoints/s and the call's p50/p99 (a call is one checkpoint plus the call's own
  round trip). Calls go straight to each name's owner.
- **activation on first call**: registers ``activation_names(params)`` names with
  ``lazy=True`` (placed, not started), checks that none is active, then times the first
  call to each, one at a time: the owner starts the worker on that call. The second
  call to each (already active) is timed too, as the baseline (``details``).

Errors (a lease lost under load) are counted in ``details``, not timed.
"""

from __future__ import annotations

import time

import grpc.aio

from registry.bench.durable import CheckpointBench, drive, owner_addresses
from registry.bench.load import Latency, Progress, run_lanes, summarize
from registry.bench.params import Params
from registry.bench.results import SectionResult
from registry.testing.local_cluster import RPC_TIMEOUT_S, LocalCluster
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc

WORKER_MODULE = "registry.bench.durable"
PREFIX = "bench/durable/"
CONCURRENCY = 64
STATE_BYTES = 1024
CALL_TIMEOUT_S = 10.0


def seconds(params: Params) -> float:
    """How long checkpoints are driven: ``ops / 1000`` s within 1..10 s (so a quick run
    takes 2 s, a full one 10 s, the smoke test's tiny one 1 s), and never past the budget."""
    return min(max(params.ops / 1000, 1.0), 10.0, params.budget_s)


def activation_names(params: Params) -> int:
    return min(params.names, 200 if params.quick else 1000)


def _register(c: LocalCluster, names: list[str], *, lazy: bool, batch: int) -> None:
    leader = c.wait_ready(timeout=60)
    for start in range(0, len(names), batch):
        specs = [
            pb.NameSpec(name=n, kind=CheckpointBench.kind, lazy=lazy)
            for n in names[start : start + batch]
        ]
        c.stub(leader).RegisterMany(pb.RegisterManyRequest(specs=specs), timeout=30)


async def _first_calls(addresses: dict[str, str], budget_s: float) -> tuple[Latency, Latency]:
    """The first call to each name, one at a time, then the second (the baseline)."""
    names = list(addresses)
    channels = {a: grpc.aio.insecure_channel(a) for a in set(addresses.values())}
    try:
        stubs = {n: registry_pb2_grpc.RegistryStub(channels[a]) for n, a in addresses.items()}

        async def call(i: int) -> None:
            name = names[i]
            await stubs[name].Call(
                pb.CallRequest(name=name, payload=b"noop"), timeout=CALL_TIMEOUT_S
            )

        first = await run_lanes(call, len(names), 1, budget_s=budget_s)
        second = await run_lanes(call, first.n, 1, budget_s=budget_s)
    finally:
        for channel in channels.values():
            await channel.close()
    return first, second


def _inactive(c: LocalCluster, names: list[str], addresses: dict[str, str]) -> int:
    """How many of ``names`` their owner reports as not active (``Location.active``)."""
    by_address = {n.grpc_addr: node_id for node_id, n in c.nodes.items()}
    count = 0
    for name in names:
        reply = c.stub(by_address[addresses[name]]).WhereIs(
            pb.WhereIsRequest(name=name), timeout=RPC_TIMEOUT_S
        )
        loc = reply.location
        count += loc.HasField("active") and not loc.active
    return count


async def _checkpoints(addresses: dict[str, str], secs: float) -> tuple[Latency, dict[str, int]]:
    started = time.perf_counter()
    _, samples, errors = await drive(addresses, secs, str(STATE_BYTES).encode())
    return summarize(samples, time.perf_counter() - started), errors


def run(c: LocalCluster, params: Params, progress: Progress, out: SectionResult) -> None:
    import asyncio

    secs = seconds(params)
    eager = [f"{PREFIX}ckpt/{i}" for i in range(CONCURRENCY)]
    _register(c, eager, lazy=False, batch=params.batch)
    progress.step(f"durable: {STATE_BYTES} B checkpoints at c={CONCURRENCY} for {secs:.0f} s")
    ckpt, errors = asyncio.run(_checkpoints(owner_addresses(c, eager), secs))
    out.add("checkpoint_1k_c64_per_s", "checkpoints/s (1 KiB, c=64)", ckpt.per_s, "ckpt/s")
    out.add("checkpoint_1k_c64_p50_ms", "checkpoint call p50 (1 KiB, c=64)", ckpt.p50_s * 1e3, "ms")
    out.add("checkpoint_1k_c64_p99_ms", "checkpoint call p99 (1 KiB, c=64)", ckpt.p99_s * 1e3, "ms")

    count = activation_names(params)
    lazy = [f"{PREFIX}lazy/{i}" for i in range(count)]
    progress.step(f"durable: {count} lazy names, first call to each")
    _register(c, lazy, lazy=True, batch=params.batch)
    addresses = owner_addresses(c, lazy)
    inactive_before = _inactive(c, lazy, addresses)
    first, second = asyncio.run(_first_calls(addresses, params.budget_s))
    out.add("activation_first_call_p50_ms", "activation on first call p50", first.p50_s * 1e3, "ms")
    out.add("activation_first_call_p99_ms", "activation on first call p99", first.p99_s * 1e3, "ms")
    out.details.update(
        state_bytes=STATE_BYTES,
        concurrency=CONCURRENCY,
        checkpoint_seconds=secs,
        checkpoint=ckpt.to_json(),
        checkpoint_errors=errors,
        lazy_names=count,
        lazy_inactive_before_first_call=inactive_before,
        activation_first_call=first.to_json(),
        second_call=second.to_json(),
    )
