"""``whereis`` and ``call`` latency through the SDK against real node processes.

Registers ``LOOKUP_NAMES`` echo workers (untimed), waits until one ``Client``'s placement
cache knows them all and every worker answered once, then measures, over ``ops``
operations each:

- ``whereis`` answered from the placement cache (ten times ``ops``; microseconds);
- ``whereis`` by RPC (a client without a cache), and ``consistent=True`` (ReadIndex);
- ``call`` with a 16-byte payload, echoed, at concurrency 1 and ``concurrency``, routed
  straight to the owner by the cache, in ``PAIRED_ROUNDS`` runs each next to an equal run
  of the raw ``grpc.aio`` echo (``ref_grpc``'s server, started here): the median of the
  rounds' call/echo ratios is the figure the 0.8 target applies to. Load on a shared
  2-core machine drifts by 2x within a minute, so only runs side by side compare. Each
  round also runs the echo over as many servers as the cluster has nodes, each call to
  one drawn at random (the calls' names live on that many worker hosts): the call's
  ratio to that like-for-like echo is reported beside, without a target;
  and for comparison a bare gRPC stub that always asks the first node, which forwards
  calls for names it does not run one hop to the owner (in ``details`` only);
- ``call`` c=1 to one name only: the same path with one host and one activation kept warm,
  where the c=1 row moves between the hosts and touches another activation on every call.
  The two rows' difference is what spreading names over processes costs (issue 13).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc.aio

from registry.bench import ref_grpc
from registry.bench.clusters import seeds
from registry.bench.load import Latency, Progress, run_lanes, summarize
from registry.bench.params import Params
from registry.bench.results import SectionResult, Target
from registry.bench.writes import Settled, settle
from registry.client import Client, Registration
from registry.testing.local_cluster import CHANNEL_OPTIONS, LocalCluster
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc

PREFIX = "bench/lookup/"
LOOKUP_NAMES = 1000
PAYLOAD = ref_grpc.PAYLOAD
WHEREIS_CACHE_TARGET_US = 5.0
CALL_P50_TARGET_MS = 1.0
CALL_VS_GRPC_TARGET = 0.8
"""``call`` throughput at c=1 and c=64 against the raw grpc.aio echo's (one server), in
the same rounds."""
PAIRED_ROUNDS = 5
"""Runs of each call row, each beside a run of the echo (module docstring)."""
SPREAD_DRAWS = 100_000
"""Length of the seeded sequence of echo servers the spread echo cycles through."""


@dataclass(frozen=True, slots=True)
class Round:
    """One paired round's rates, operations per second."""

    call_per_s: float
    echo_per_s: float
    """The raw echo to one server."""
    spread_per_s: float
    """The raw echo over as many servers as the cluster has nodes."""


async def run(c: LocalCluster, params: Params, progress: Progress, out: SectionResult) -> None:
    count = min(LOOKUP_NAMES, params.names)
    keys = [f"{PREFIX}{i}" for i in range(count)]
    rows: dict[str, Latency] = {}
    pairs: dict[int, list[Round]] = {}
    servers: list[subprocess.Popen[bytes]] = []
    try:
        counters = await _measure(c, params, progress, keys, rows, pairs, servers)
    finally:
        for server in servers:
            ref_grpc.stop(server)
    _report(out, rows, pairs, params)
    out.details.update(names=count, payload_bytes=len(PAYLOAD), **counters)


async def _measure(
    c: LocalCluster,
    params: Params,
    progress: Progress,
    keys: list[str],
    rows: dict[str, Latency],
    pairs: dict[int, list[Round]],
    servers: list[subprocess.Popen[bytes]],
) -> dict[str, int]:
    """Every row, into ``rows`` and ``pairs``; the client's call counters."""
    count, ops = len(keys), params.ops
    echo_addresses = [await ref_grpc.start_server(servers) for _ in range(max(1, params.nodes))]
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(Client(seeds(c), timeout=120.0))
        plain = await stack.enter_async_context(Client(seeds(c), cache=False, timeout=120.0))
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(seeds(c)[0]))
        echoes = []
        for address in echo_addresses:
            echo_channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            echoes.append(ref_grpc.caller(await stack.enter_async_context(echo_channel)))
        echo = echoes[0]
        rng = random.Random(ref_grpc.SPREAD_SEED)
        spread_order = [rng.randrange(len(echoes)) for _ in range(SPREAD_DRAWS)]

        def spread_echo(i: int) -> Awaitable[bytes]:
            return echoes[spread_order[i % SPREAD_DRAWS]](i)

        stub = registry_pb2_grpc.RegistryStub(channel)

        async def bare_call(name: str) -> Any:
            return await stub.Call(pb.CallRequest(name=name, payload=PAYLOAD), timeout=10)

        progress.step(f"lookups: registering {count} echo names and warming up")
        missing = [k for k in keys if await plain.whereis(k) is None]
        for start in range(0, len(missing), params.batch):
            chunk = missing[start : start + params.batch]
            specs = [Registration(k, "echo") for k in chunk]
            await settle(partial(client.register_many, specs), Settled())
        deadline = time.monotonic() + 120
        while not all(client.cached(k) for k in keys):
            if time.monotonic() > deadline:
                raise TimeoutError("the placement cache did not learn every name in 120 s")
            progress.waiting("waiting for the placement cache")
            await asyncio.sleep(0.05)
        for i, k in enumerate(keys):  # every worker running, every channel connected
            await client.call(k, PAYLOAD, idempotent=True)
            await bare_call(k)
            await echoes[i % len(echoes)](i)

        def key(i: int) -> str:
            return keys[i % count]

        progress.step(f"whereis from the cache ({ops * 10:,} lookups)")
        rows["whereis_cache"] = await run_lanes(
            lambda i: client.whereis(key(i)), ops * 10, 1, progress, budget_s=params.budget_s
        )
        progress.step(f"whereis by RPC ({ops:,})")
        rows["whereis_rpc"] = await run_lanes(
            lambda i: plain.whereis(key(i)), ops, 1, progress, budget_s=params.budget_s
        )
        progress.step(f"whereis consistent ({ops:,})")
        rows["whereis_consistent"] = await run_lanes(
            lambda i: plain.whereis(key(i), consistent=True),
            ops,
            1,
            progress,
            budget_s=params.budget_s,
        )
        before = client.stats
        for concurrency in (1, params.concurrency):
            progress.step(f"call c={concurrency} ({ops:,}), beside the raw echo")
            rows[f"call_c{concurrency}"], pairs[concurrency] = await _paired(
                lambda i: client.call(key(i), PAYLOAD),
                (echo, spread_echo),
                concurrency,
                params,
                progress,
            )
            progress.step(f"call via one node's stub c={concurrency} ({ops:,})")
            rows[f"bare_call_c{concurrency}"] = await run_lanes(
                lambda i: bare_call(key(i)), ops, concurrency, progress, budget_s=params.budget_s
            )
        progress.step(f"call c=1 to one name ({ops:,})")
        rows["call_one_name_c1"] = await run_lanes(
            lambda i: client.call(keys[0], PAYLOAD), ops, 1, progress, budget_s=params.budget_s
        )
        after = client.stats
    return {
        "client_calls": after.calls - before.calls,
        "client_calls_forwarded": after.calls_forwarded - before.calls_forwarded,
        "client_retries": after.retries - before.retries,
    }


async def _paired(
    call: Callable[[int], Awaitable[object]],
    echoes: tuple[Callable[[int], Awaitable[object]], Callable[[int], Awaitable[object]]],
    concurrency: int,
    params: Params,
    progress: Progress,
) -> tuple[Latency, list[Round]]:
    """``params.ops`` calls in ``PAIRED_ROUNDS`` runs, each beside a run of as many raw
    echoes to one server and one over all of them (the echoes first in even rounds, the
    call first in odd ones, so a drift of the machine's load within a round falls on all
    alike); the calls' row over all their runs, and each round's rates."""
    chunk = max(1, params.ops // PAIRED_ROUNDS)
    budget_s = params.budget_s / PAIRED_ROUNDS
    samples: list[float] = []
    wall_s = 0.0
    rounds: list[Round] = []
    for round_no in range(PAIRED_ROUNDS):
        rates: dict[str, float] = {}
        lanes = [("echo", echoes[0]), ("spread", echoes[1]), ("call", call)]
        for lane, op in reversed(lanes) if round_no % 2 else lanes:
            if lane == "call":
                row = await run_lanes(
                    op, chunk, concurrency, progress, budget_s=budget_s, samples=samples
                )
                wall_s += row.wall_s
            else:
                row = await run_lanes(op, chunk, concurrency, budget_s=budget_s)
            rates[lane] = row.per_s
        rounds.append(Round(rates["call"], rates["echo"], rates["spread"]))
    return summarize(samples, wall_s, chunk * PAIRED_ROUNDS), rounds


def _report(
    out: SectionResult,
    rows: dict[str, Latency],
    pairs: dict[int, list[Round]],
    params: Params,
) -> None:
    cache = rows["whereis_cache"]
    out.add(
        "whereis_cache_p50_us",
        "whereis from the cache p50",
        cache.p50_s * 1e6,
        "µs",
        target=Target(op="<=", bound=WHEREIS_CACHE_TARGET_US),
    )
    out.add("whereis_cache_p99_us", "whereis from the cache p99", cache.p99_s * 1e6, "µs")
    for row_key, what in (
        ("whereis_rpc", "whereis by RPC"),
        ("whereis_consistent", "whereis consistent (ReadIndex)"),
    ):
        out.add(f"{row_key}_p50_ms", f"{what} p50", rows[row_key].p50_s * 1e3, "ms")
        out.add(f"{row_key}_p99_ms", f"{what} p99", rows[row_key].p99_s * 1e3, "ms")
    for concurrency in (1, params.concurrency):
        row = rows[f"call_c{concurrency}"]
        out.add(
            f"call_c{concurrency}_p50_ms",
            f"call c={concurrency} p50",
            row.p50_s * 1e3,
            "ms",
            target=Target(op="<=", bound=CALL_P50_TARGET_MS) if concurrency == 1 else None,
        )
        out.add(f"call_c{concurrency}_p99_ms", f"call c={concurrency} p99", row.p99_s * 1e3, "ms")
        out.add(f"call_c{concurrency}_per_s", f"call c={concurrency}", row.per_s, "calls/s")
    one = rows["call_one_name_c1"]
    out.add("call_one_name_c1_p50_ms", "call c=1 to one name p50", one.p50_s * 1e3, "ms")
    out.add("call_one_name_c1_per_s", "call c=1 to one name", one.per_s, "calls/s")
    for concurrency, rounds in pairs.items():
        ratios = [r.call_per_s / r.echo_per_s for r in rounds if r.echo_per_s > 0]
        out.add(
            f"call_c{concurrency}_vs_echo",
            f"call c={concurrency} / raw echo c={concurrency}, side by side "
            f"(median of {len(ratios)} rounds)",
            statistics.median(ratios),
            "×",
            target=Target(op=">=", bound=CALL_VS_GRPC_TARGET),
        )
        spread = [r.call_per_s / r.spread_per_s for r in rounds if r.spread_per_s > 0]
        out.add(
            f"call_c{concurrency}_vs_echo_spread",
            f"call c={concurrency} / raw echo c={concurrency} over {params.nodes} processes, "
            f"side by side (median of {len(spread)} rounds)",
            statistics.median(spread),
            "×",
        )
    out.details.update(
        rows={k: v.to_json() for k, v in rows.items()},
        paired_rounds={
            f"c{concurrency}": [
                {
                    "call_per_s": round(r.call_per_s, 1),
                    "echo_per_s": round(r.echo_per_s, 1),
                    "echo_spread_per_s": round(r.spread_per_s, 1),
                }
                for r in rounds
            ]
            for concurrency, rounds in pairs.items()
        },
    )
