"""Calls by kind: the host's ``CallStats`` times each reply future into the right result
and bucket and reports deltas; the node's ``CallsByKind`` adds the deltas up into
cumulative Prometheus series that never go back (a host restart loses at most a report)."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from registry.node.call_metrics import CallsByKind
from registry.node.hosts.main import call_stats_to_pb
from registry.worker.call_stats import CALL_BUCKETS, CallStats, KindCalls


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_results_buckets_and_deltas() -> None:
    async def run() -> None:
        clock = Clock()
        stats = CallStats(clock=clock)
        loop = asyncio.get_running_loop()
        ok, failed, gave_up = (loop.create_future() for _ in range(3))
        stats.watch("echo", ok)
        stats.watch("echo", failed)
        stats.watch("counter", gave_up)
        clock.now += 0.003  # 3 ms: the (0.0025, 0.005] bucket
        ok.set_result(b"hi")
        failed.set_exception(ValueError("boom"))
        gave_up.cancel()
        await asyncio.sleep(0)  # done callbacks run on the loop
        first = stats.drain()
        assert first["echo"].results == {"ok": 1, "error": 1, "cancelled": 0}
        assert first["counter"].results == {"ok": 0, "error": 0, "cancelled": 1}
        bucket = CALL_BUCKETS.index(0.005)
        assert first["echo"].buckets[bucket] == 2 and sum(first["echo"].buckets) == 2
        assert abs(first["echo"].seconds - 0.006) < 1e-9
        assert stats.drain() == {}  # a delta: nothing new since

    asyncio.run(run())


def test_the_node_adds_reports_up_cumulatively() -> None:
    async def report() -> dict[str, KindCalls]:
        stats = CallStats()
        reply = asyncio.get_running_loop().create_future()
        stats.watch("echo", reply)
        reply.set_result(b"")
        await asyncio.sleep(0)
        return dict(stats.drain())

    registry = CollectorRegistry()
    calls = CallsByKind(registry)
    for _ in range(3):  # three reports, from one host or several
        calls.add(call_stats_to_pb(asyncio.run(report())))
    value = registry.get_sample_value
    assert value("registry_calls_total", {"kind": "echo", "result": "ok"}) == 3
    assert value("registry_calls_total", {"kind": "echo", "result": "error"}) == 0
    assert value("registry_call_seconds_count", {"kind": "echo"}) == 3
    assert value("registry_call_seconds_bucket", {"kind": "echo", "le": "+Inf"}) == 3
    # Cumulative: a bucket counts every faster call too. (Not the 0.5 ms bucket itself:
    # on a loaded machine a call can take longer; it failed once in a parallel run.)
    assert value("registry_call_seconds_bucket", {"kind": "echo", "le": "10.0"}) == 3
    bad = call_stats_to_pb(asyncio.run(report()))
    del bad.kinds[0].buckets[-1]  # another release's buckets: not added
    calls.add(bad)
    assert value("registry_calls_total", {"kind": "echo", "result": "ok"}) == 3
