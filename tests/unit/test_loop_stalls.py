"""``LoopStalls``: a late event loop is measured, and the warning says why."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

from registry.node.loop_stalls import LoopStalls


def _stalls(**kw: object) -> tuple[LoopStalls, Histogram]:
    histogram = Histogram("lag_seconds", "lag", registry=CollectorRegistry())
    return LoopStalls(histogram, slowest=lambda: "120 ms, 9 entries applied", **kw), histogram  # type: ignore[arg-type]


def test_a_busy_thread_is_told_from_one_that_was_not_running() -> None:
    stalls, _ = _stalls()
    stalls.report(lag=0.4, cpu=0.38)
    stalls.report(lag=0.4, cpu=0.05)
    busy, idle = stalls.warnings
    assert "400 ms late" in busy and "busy with its own work" in busy
    assert "the longest Ready: 120 ms, 9 entries applied" in busy
    assert "was not running" in idle and "busy" not in idle


def _count(histogram: Histogram) -> float:
    samples = [s for family in histogram.collect() for s in family.samples]
    return float(next(s.value for s in samples if s.name.endswith("_count")))


def test_a_blocked_loop_is_measured_and_reported() -> None:
    """A real loop blocked by synchronous work: the lag is observed and warned about."""
    stalls, histogram = _stalls(period_s=0.01, warn_after_s=0.2)

    async def main() -> None:
        monitor = asyncio.create_task(stalls.run())
        deadline = time.monotonic() + 10
        while _count(histogram) < 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        spin_until = time.thread_time() + 0.3  # 300 ms of CPU with the loop blocked
        while time.thread_time() < spin_until:
            pass
        while not stalls.warnings and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        monitor.cancel()

    asyncio.run(main())
    assert len(stalls.warnings) == 1, stalls.warnings
    assert "ms late" in stalls.warnings[0]
    assert _count(histogram) >= 4
