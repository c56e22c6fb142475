"""The load generator every section shares, and the progress line on stderr.

``run_lanes(op, ops, concurrency)`` runs ``concurrency`` asyncio lanes that take operation
numbers from one counter until ``ops`` are done, timing each ``await op(i)`` with
``perf_counter``. Our ``call`` bench, the raw gRPC echo reference and the etcd reference
all go through it, so their figures differ only in what ``op`` does.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TextIO

PROGRESS_EVERY_S = 2.0


class Progress:
    """At most one line every ``PROGRESS_EVERY_S`` per step, plus its start and end."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False) -> None:
        self._out = out or sys.stderr
        self._quiet = quiet
        self._started = time.monotonic()
        self._step = ""
        self._step_started = 0.0
        self._last = 0.0

    def say(self, text: str) -> None:
        if not self._quiet:
            elapsed = time.monotonic() - self._started
            print(f"[bench {elapsed:6.1f}s] {text}", file=self._out, flush=True)

    def step(self, name: str) -> None:
        self._step = name
        self._step_started = self._last = time.monotonic()
        self.say(f"{name} ...")

    def tick(self, done: int, total: int, unit: str = "ops") -> None:
        """Report ``done`` of ``total`` if the last line is old enough."""
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        rate = done / max(now - self._step_started, 1e-9)
        self.say(f"{self._step}: {done:,}/{total:,} {unit}, {rate:,.0f} {unit}/s")

    def waiting(self, what: str) -> None:
        """A rate-limited 'still waiting for …' line for polls without a count."""
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY_S:
            return
        self._last = now
        self.say(f"{self._step}: {what} ({now - self._step_started:.1f} s)")


@dataclass(frozen=True, slots=True)
class Latency:
    n: int
    """Operations done (fewer than asked when the time budget ran out)."""
    wall_s: float
    p50_s: float
    p99_s: float
    max_s: float
    asked: int = 0
    """Operations asked for."""

    @property
    def complete(self) -> bool:
        return self.n >= self.asked

    @property
    def per_s(self) -> float:
        return self.n / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, float]:
        return {
            "n": self.n,
            "wall_s": round(self.wall_s, 4),
            "p50_ms": self.p50_s * 1e3,
            "p99_ms": self.p99_s * 1e3,
            "max_ms": self.max_s * 1e3,
            "per_s": round(self.per_s, 1),
            "asked": self.asked,
            "complete": self.complete,
        }


def summarize(samples: list[float], wall_s: float, asked: int = 0) -> Latency:
    if not samples:
        raise ValueError("no operation finished")
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Latency(
        n=len(ordered),
        wall_s=wall_s,
        p50_s=statistics.median(ordered),
        p99_s=p99,
        max_s=ordered[-1],
        asked=asked or len(ordered),
    )


async def run_lanes(
    op: Callable[[int], Awaitable[object]],
    ops: int,
    concurrency: int,
    progress: Progress | None = None,
    unit: str = "ops",
    weight: int = 1,
    budget_s: float | None = None,
    samples: list[float] | None = None,
) -> Latency:
    """Run ``ops`` operations over ``concurrency`` lanes; ``weight`` items per operation
    for the progress line (e.g. names per batch). After ``budget_s`` seconds lanes take
    no new operation: the result then has fewer than ``ops`` (``complete`` is false), so
    a slow system still gives a figure in bounded time. ``samples``: a list the
    operations' latencies are appended to as well (one row measured in several runs)."""
    samples = [] if samples is None else samples
    before = len(samples)
    counter = iter(range(ops))
    perf = time.perf_counter
    stop_at = perf() + budget_s if budget_s is not None else float("inf")

    async def lane() -> None:
        for i in counter:
            if perf() > stop_at:
                return
            started = perf()
            await op(i)
            samples.append(perf() - started)
            if progress is not None:
                progress.tick((len(samples) - before) * weight, ops * weight, unit)

    wall_started = perf()
    await asyncio.gather(*(lane() for _ in range(max(1, min(concurrency, ops)))))
    return summarize(samples[before:], perf() - wall_started, ops)
