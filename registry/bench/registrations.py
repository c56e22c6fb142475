"""Registration throughput through the SDK: one by one and batched.

- one by one: ``Client.register`` of ``names`` names at ``concurrency`` in flight, as a
  program would call it: the SDK sends the registrations made in one event-loop round
  together (``registry.client.coalesce``);
- one RPC each: the same with ``coalesce_writes=False`` (one unary ``Register`` per name,
  at most ``UNARY_NAMES`` names), so the table shows what the coalescing is worth;
- batched: ``Client.register_many`` of ``batch`` names per call, ``batch_concurrency``
  calls in flight.

Every name is an ``echo`` worker placed by the ring, so each registration also starts an
activation on its owner. The clock stops when the last acknowledgement arrives (the
entry is committed, fsync'd on a majority and applied on the node that answered); the
section then checks that the leader lists every name. A write made ambiguous by a leader
change is settled by retrying it (``writes``); the retries are counted in ``details``.
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
KIND = "echo"
ONE_TARGET_PER_S = 2_000.0
BATCH_TARGET_PER_S = 25_000.0


async def run(c: LocalCluster, params: Params, progress: Progress, out: SectionResult) -> None:
    n = params.names
    status = leader_status(c)
    names_before, term_before = status.names, status.term
    single_writes, unary_writes, batch_writes = Settled(), Settled(), Settled()
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

    async with Client(seeds(c), cache=False, timeout=60.0) as client:
        batches = (n + params.batch - 1) // params.batch
        progress.step(
            f"registrations batched ({n:,} names, {params.batch} per call, "
            f"{params.batch_concurrency} calls in flight)"
        )

        async def many(b: int) -> None:
            first = b * params.batch
            specs = [
                Registration(f"{BATCH_PREFIX}{i}", KIND)
                for i in range(first, min(first + params.batch, n))
            ]
            await settle(lambda: client.register_many(specs), batch_writes)
            batched_names.append(len(specs))

        batched_names: list[int] = []
        batched = await run_lanes(
            many,
            batches,
            params.batch_concurrency,
            progress,
            "names",
            weight=params.batch,
            budget_s=params.budget_s,
        )
        out.add(
            "batched_per_s",
            f"register batched ({params.batch}/call, {params.batch_concurrency} in flight)",
            sum(batched_names) / batched.wall_s,
            "names/s",
            target=Target(op=">=", bound=BATCH_TARGET_PER_S),
            note=_budget_note(sum(batched_names), n, params.budget_s),
        )
        out.add("batched_call_p50_ms", "register_many call p50", batched.p50_s * 1e3, "ms")
        out.add("batched_call_p99_ms", "register_many call p99", batched.p99_s * 1e3, "ms")

    expected = names_before + single.n + one_rpc.n + sum(batched_names)
    started = time.monotonic()

    def all_listed() -> int | None:
        listed = leader_status(c).names
        return listed if listed == expected else None

    listed = wait_for(f"the leader to list all {expected:,} names", all_listed, 60.0, 0.2)
    out.details.update(
        names=n,
        names_one_by_one=single.n,
        names_one_rpc_each=one_rpc.n,
        names_batched=sum(batched_names),
        names_listed=listed,
        names_before=names_before,
        check_s=round(time.monotonic() - started, 3),
        one_by_one=single.to_json(),
        one_rpc_each=one_rpc.to_json(),
        batched=batched.to_json(),
        one_by_one_writes=single_writes.to_json(),
        one_rpc_each_writes=unary_writes.to_json(),
        batched_writes=batch_writes.to_json(),
        raft_term_before=term_before,
        raft_term_after=leader_status(c).term,
        kind=KIND,
    )


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
