"""Registration throughput through the SDK: one by one and batched.

- one by one: ``Client.register`` of ``names`` names at ``concurrency`` in flight, as a
  program would call it: the SDK sends the registrations made in one event-loop round
  together (``registry.client.coalesce``);
- one RPC each: the same with ``coalesce_writes=False`` (one unary ``Register`` per name,
  at most ``UNARY_NAMES`` names), so the table shows what the coalescing is worth;
- batched: ``Client.register_many`` of ``batch`` names per call, ``batch_concurrency``
  calls in flight;
- batched, lazy: the same with ``lazy=True`` names, which start no activation until their
  first call: the registry's own write path alone, without the worker hosts' work (a
  diagnostic row with no target: the batched row is the one compared with etcd).

Every name is an ``echo`` worker placed by the ring, so each registration (but a lazy
one) also starts an activation on its owner. The clock stops when the last
acknowledgement arrives (the entry is committed, fsync'd on a majority and applied on
the node that answered); the section then checks that the leader lists every name. A
write made ambiguous by a leader change is settled by retrying it (``writes``); the
retries are counted in ``details``.
"""

from __future__ import annotations

import time

from registry.bench.clusters import leader_status, seeds
from registry.bench.load import Latency, Progress, run_lanes
from registry.bench.params import Params
from registry.bench.results import SectionResult, Target
from registry.bench.writes import Settled, settle
from registry.client import Client, Registration
from registry.testing.local_cluster import LocalCluster, wait_for

ONE_PREFIX = "bench/one/"
UNARY_PREFIX = "bench/unary/"
UNARY_NAMES = 10_000
BATCH_PREFIX = "bench/batch/"
LAZY_PREFIX = "bench/lazy/"
KIND = "echo"
ONE_TARGET_PER_S = 2_000.0
BATCH_TARGET_PER_S = 25_000.0


async def run(c: LocalCluster, params: Params, progress: Progress, out: SectionResult) -> None:
    n = params.names
    status = leader_status(c)
    names_before, term_before = status.names, status.term
    single_writes, unary_writes = Settled(), Settled()
    batch_writes, lazy_writes = Settled(), Settled()
    single = await _one_by_one(
        c, params, progress, out, single_writes, key="one_by_one", prefix=ONE_PREFIX, count=n
    )
    one_rpc = await _one_by_one(
        c,
        params,
        progress,
        out,
        unary_writes,
        key="one_rpc_each",
        prefix=UNARY_PREFIX,
        count=min(n, UNARY_NAMES),
    )

    # Lazy first: the batched row leaves its owners starting activations for a while.
    lazy_names, lazy = await _batched(
        c, params, progress, out, lazy_writes, key="batched_lazy", prefix=LAZY_PREFIX, lazy=True
    )
    batched_names, batched = await _batched(
        c, params, progress, out, batch_writes, key="batched", prefix=BATCH_PREFIX, lazy=False
    )

    expected = names_before + single.n + one_rpc.n + batched_names + lazy_names
    started = time.monotonic()

    def all_listed() -> int | None:
        listed = leader_status(c).names
        return listed if listed == expected else None

    listed = wait_for(f"the leader to list all {expected:,} names", all_listed, 60.0, 0.2)
    out.details.update(
        names=n,
        names_one_by_one=single.n,
        names_one_rpc_each=one_rpc.n,
        names_batched=batched_names,
        names_batched_lazy=lazy_names,
        names_listed=listed,
        names_before=names_before,
        check_s=round(time.monotonic() - started, 3),
        one_by_one=single.to_json(),
        one_rpc_each=one_rpc.to_json(),
        batched=batched.to_json(),
        batched_lazy=lazy.to_json(),
        one_by_one_writes=single_writes.to_json(),
        one_rpc_each_writes=unary_writes.to_json(),
        batched_writes=batch_writes.to_json(),
        batched_lazy_writes=lazy_writes.to_json(),
        raft_term_before=term_before,
        raft_term_after=leader_status(c).term,
        kind=KIND,
    )


async def _batched(
    c: LocalCluster,
    params: Params,
    progress: Progress,
    out: SectionResult,
    settled: Settled,
    *,
    key: str,
    prefix: str,
    lazy: bool,
) -> tuple[int, Latency]:
    """``register_many`` of ``params.names`` names, ``params.batch`` per call; returns how
    many were registered and the call latencies."""
    n = params.names
    what = "batched, lazy (no activation started)" if lazy else "batched"
    progress.step(
        f"registrations {what} ({n:,} names, {params.batch} per call, "
        f"{params.batch_concurrency} calls in flight)"
    )
    registered: list[int] = []
    async with Client(seeds(c), cache=False, timeout=60.0) as client:

        async def many(b: int) -> None:
            first = b * params.batch
            specs = [
                Registration(f"{prefix}{i}", KIND, lazy=lazy)
                for i in range(first, min(first + params.batch, n))
            ]
            await settle(lambda: client.register_many(specs), settled)
            registered.append(len(specs))

        done = await run_lanes(
            many,
            (n + params.batch - 1) // params.batch,
            params.batch_concurrency,
            progress,
            "names",
            weight=params.batch,
            budget_s=params.budget_s,
        )
    label = f"register {what} ({params.batch}/call, {params.batch_concurrency} in flight)"
    target = None if lazy else Target(op=">=", bound=BATCH_TARGET_PER_S)
    note = _budget_note(sum(registered), n, params.budget_s)
    out.add(
        f"{key}_per_s", label, sum(registered) / done.wall_s, "names/s", target=target, note=note
    )
    out.add(f"{key}_call_p50_ms", f"register_many {what} call p50", done.p50_s * 1e3, "ms")
    out.add(f"{key}_call_p99_ms", f"register_many {what} call p99", done.p99_s * 1e3, "ms")
    return sum(registered), done


async def _one_by_one(
    c: LocalCluster,
    params: Params,
    progress: Progress,
    out: SectionResult,
    writes: Settled,
    *,
    key: str,
    prefix: str,
    count: int,
) -> Latency:
    """``count`` ``Client.register`` calls at ``params.concurrency`` in flight; the
    ``one_rpc_each`` row turns the SDK's write coalescing off."""
    coalesce = key == "one_by_one"
    what = "one by one" if coalesce else "one RPC each"
    how = "coalesced by the SDK" if coalesce else "coalescing off"
    progress.step(f"registrations {what} ({count:,} names, {params.concurrency} in flight)")
    async with Client(seeds(c), cache=False, timeout=60.0, coalesce_writes=coalesce) as client:

        async def one(i: int) -> None:
            await settle(lambda: client.register(f"{prefix}{i}", KIND), writes)

        done = await run_lanes(
            one, count, params.concurrency, progress, "names", budget_s=params.budget_s
        )
    out.add(
        f"{key}_per_s",
        f"register {what} (c={params.concurrency}, {how})",
        done.per_s,
        "names/s",
        target=Target(op=">=", bound=ONE_TARGET_PER_S) if coalesce else None,
        note=_budget_note(done.n, count, params.budget_s),
    )
    out.add(f"{key}_p50_ms", f"register {what} p50", done.p50_s * 1e3, "ms")
    out.add(f"{key}_p99_ms", f"register {what} p99", done.p99_s * 1e3, "ms")
    return done


def _budget_note(done: int, asked: int, budget_s: float) -> str:
    if done >= asked:
        return ""
    return f"stopped at the {budget_s:g} s budget after {done:,} of {asked:,} names"
