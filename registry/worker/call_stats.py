"""Calls answered in a worker host, by kind: what ``registry_calls_total{kind,result}``
and ``registry_call_seconds{kind}`` are made of.

Every call a host takes — on its own port or relayed by the control process — goes
through ``WorkerRuntime.submit_call``; ``watch`` times it from then until its reply
future is done (queueing included: that is the latency a caller sees from the host on).
The host sends what accumulated since its last report every ``REPORT_S`` (``drain``),
and the control process adds the deltas up, so a host restart loses at most one period
and never makes a counter go back. Kinds are the worker classes a node loads: a bounded
label set.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds, the same as ``registry_rpc_seconds``."""
REPORT_S = 1.0
RESULTS = ("ok", "error", "cancelled")
"""ok: answered; error: the worker raised (or the call could not run); cancelled: the
caller gave up first (its deadline passed or it went away)."""


@dataclass(slots=True)
class KindCalls:
    results: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    buckets: list[int] = field(default_factory=lambda: [0] * (len(CALL_BUCKETS) + 1))
    """Per bucket, not cumulative; the last is +Inf."""
    seconds: float = 0.0

    def add(self, other: KindCalls) -> None:
        for result, count in other.results.items():
            self.results[result] = self.results.get(result, 0) + count
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.seconds += other.seconds


class CallStats:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._kinds: dict[str, KindCalls] = {}

    def began(self) -> float:
        """Now, on the clock ``watch`` measures with: take it before the call is
        submitted (one that starts at once may be answered before ``watch``)."""
        return self._clock()

    def watch(self, kind: str, reply: asyncio.Future[bytes], began: float | None = None) -> None:
        """Count ``reply``'s outcome and time, from ``began`` (default: now), when it is
        done (at once if it already is)."""
        since = self._clock() if began is None else began
        if reply.done():
            self._done(kind, since, reply)
        else:
            reply.add_done_callback(lambda done: self._done(kind, since, done))

    def _done(self, kind: str, began: float, reply: asyncio.Future[bytes]) -> None:
        if reply.cancelled():
            result = "cancelled"
        else:
            result = "ok" if reply.exception() is None else "error"
        elapsed = max(0.0, self._clock() - began)
        calls = self._kinds.get(kind)
        if calls is None:
            calls = self._kinds[kind] = KindCalls()
        calls.results[result] += 1
        calls.buckets[bisect.bisect_left(CALL_BUCKETS, elapsed)] += 1
        calls.seconds += elapsed

    def drain(self) -> dict[str, KindCalls]:
        """What accumulated since the last ``drain``."""
        kinds, self._kinds = self._kinds, {}
        return kinds
