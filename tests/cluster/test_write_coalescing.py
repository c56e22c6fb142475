"""The SDK's write coalescing (``registry.client.coalesce``) against real node processes.

Concurrent ``Client.register`` calls leave as one ``RegisterMany``; each caller must
still get the answer its own request earns: a taken name fails only its caller, the same
name twice in one round commits once, and a caller with a shorter deadline than its
batch gets ``DeadlineExceeded`` at its own deadline, not its batch's.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from registry import Client, DeadlineExceeded, NameTaken, NoQuorum
from registry.client.coalesce import MAX_BYTES, MAX_ITEMS, WriteCoalescer, _Pending
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, wait_for


def _seeds(c: LocalCluster) -> list[str]:
    return [c.nodes[i].grpc_addr for i in c.ids]


def _listed(c: LocalCluster, prefix: str) -> set[str]:
    reply = c.stub(c.ids[0]).List(pb.ListRequest(prefix=prefix), timeout=5)
    return {loc.name for loc in reply.locations}


def test_concurrent_registrations_share_one_entry_and_each_gets_its_index(
    calm_cluster: LocalCluster,
) -> None:
    c = calm_cluster
    names = [f"coalesce/many/{i}" for i in range(50)]

    async def main() -> tuple[list[int], int, int]:
        async with Client(_seeds(c)) as client:
            indexes = await asyncio.gather(*(client.register(n, "echo") for n in names))
            return list(indexes), client.stats.register_batches, client.stats.registrations_batched

    indexes, batches, batched = asyncio.run(main())
    assert all(index > 0 for index in indexes)
    # One event-loop round made all 50 calls: one batch, one log entry, one index.
    assert (batches, batched) == (1, 50)
    assert len(set(indexes)) == 1
    # List is a local read on n1, which may not have applied the entry yet when the
    # leader answered (ci-run50): wait for it, with a deadline.
    wait_for("n1 lists every name", lambda: _listed(c, "coalesce/many/") == set(names), 10)


def test_a_taken_name_fails_only_its_own_caller(calm_cluster: LocalCluster) -> None:
    c = calm_cluster
    taken = "coalesce/taken/0"
    fresh = [f"coalesce/taken/{i}" for i in range(1, 8)]

    async def main() -> tuple[list[int | BaseException], int]:
        async with Client(_seeds(c)) as client:
            await client.register(taken, "echo")
            results = await asyncio.gather(
                *(client.register(n, "echo") for n in [taken, *fresh]), return_exceptions=True
            )
            return list(results), client.stats.registrations_resent

    results, resent = asyncio.run(main())
    assert isinstance(results[0], NameTaken), results[0]
    assert "coalesce/taken/0" in str(results[0])
    assert all(isinstance(r, int) and r > 0 for r in results[1:]), results
    assert resent == 8  # the batch was refused whole, then each went on its own
    wanted = {taken, *fresh}
    wait_for("n1 lists every name", lambda: _listed(c, "coalesce/taken/") == wanted, 10)


def test_the_same_name_twice_in_one_round_commits_once(calm_cluster: LocalCluster) -> None:
    c = calm_cluster
    name = "coalesce/twice"

    async def main() -> list[int | BaseException]:
        async with Client(_seeds(c)) as client:
            first = client.register(name, "echo")
            second = client.register(name, "echo")
            other = client.register("coalesce/twice-other", "echo")
            return list(await asyncio.gather(first, second, other, return_exceptions=True))

    results = asyncio.run(main())
    won = [r for r in results[:2] if isinstance(r, int)]
    lost = [r for r in results[:2] if isinstance(r, NameTaken)]
    assert len(won) == 1 and len(lost) == 1, results
    assert isinstance(results[2], int)
    # List reads n1's replica, which may apply the batch a moment after the leader.
    both = {name, "coalesce/twice-other"}
    wait_for("n1 lists both names", lambda: _listed(c, "coalesce/twice") == both, 10)


def test_each_caller_keeps_its_own_deadline(tmp_path: Path) -> None:
    """Two registrations share a batch on a node without quorum: the one with the shorter
    deadline ends at its own deadline (it may still commit later: ``may_have_run``); the
    other goes on retrying until its own, and gets ``NoQuorum``."""
    lone = LocalCluster(tmp_path, 3, preset="local")
    try:
        lone.start_node("n1")  # n2 and n3 never start: 1 of 3 voters
        wait_for("n1 to serve", lambda: lone.status("n1"), 15)

        async def timed(client: Client, name: str, timeout: float) -> tuple[object, float]:
            began = time.monotonic()
            try:
                result: object = await client.register(name, "counter", timeout=timeout)
            except Exception as exc:
                result = exc
            return result, time.monotonic() - began

        async def main() -> list[tuple[object, float]]:
            async with Client([lone.nodes["n1"].grpc_addr]) as client:
                await client.cluster()
                return list(
                    await asyncio.gather(timed(client, "short", 0.5), timed(client, "long", 3.0))
                )

        (short, short_s), (long, long_s) = asyncio.run(main())
        assert isinstance(short, DeadlineExceeded), short
        assert short.may_have_run
        assert isinstance(long, NoQuorum), long
        # The bound is the feature: the short caller is not held to its batch's deadline.
        assert short_s < 1.5 < long_s, (short_s, long_s)
    finally:
        if lone.nodes["n1"].running:
            lone.kill("n1")
        lone.close()


def _pending(name: str, args: bytes = b"") -> _Pending:
    spec = pb.NameSpec(name=name, kind="echo", args=args)
    loop = asyncio.new_event_loop()
    try:
        return _Pending(spec, 0.0, spec.ByteSize(), loop.create_future())
    finally:
        loop.close()


@pytest.mark.parametrize("count", [MAX_ITEMS, MAX_ITEMS + 1])
def test_a_batch_holds_at_most_max_items(count: int) -> None:
    queue = [_pending(f"n{i}") for i in range(count)]
    batch, rest = WriteCoalescer._take(queue)
    assert len(batch) == min(count, MAX_ITEMS)
    assert batch + rest == queue  # nothing lost, order kept


def test_a_batch_holds_at_most_max_bytes_and_a_big_spec_goes_alone() -> None:
    big = _pending("big", b"x" * MAX_BYTES)
    small = [_pending(f"s{i}", b"y" * (MAX_BYTES // 4)) for i in range(5)]
    batch, rest = WriteCoalescer._take([big, *small])
    assert batch == [big]  # over the cap on its own: a batch of one (the plain call)
    batch, rest = WriteCoalescer._take(rest)
    assert sum(p.size for p in batch) <= MAX_BYTES
    assert len(batch) == 3 and rest == small[3:]


def test_a_name_appears_once_per_batch() -> None:
    a1, b, a2 = _pending("a"), _pending("b"), _pending("a")
    batch, rest = WriteCoalescer._take([a1, b, a2])
    assert batch == [a1, b] and rest == [a2]
