"""``registry_calls_total{kind,result}`` and ``registry_call_seconds{kind}``: the calls
this node's worker hosts answered, by worker kind, whichever way they arrived (a host's
own port or relayed by this control process). The hosts measure and report deltas
(``registry.worker.call_stats``); this collector adds them up, so the series only grow.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from registry.v1 import host_pb2 as pb
from registry.worker.call_stats import CALL_BUCKETS, RESULTS, KindCalls

CALLS = (
    "registry_calls",
    "Calls the worker hosts of this node answered, by worker kind and result (ok; error: "
    "the worker raised or the call could not run; cancelled: the caller gave up first).",
)
CALL_SECONDS = (
    "registry_call_seconds",
    "Time from a call reaching a worker host of this node to its answer (mailbox wait "
    "included), by worker kind.",
)


class CallsByKind:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._kinds: dict[str, KindCalls] = {}
        self._lock = threading.Lock()  # scrapes run on the HTTP thread
        registry.register(self)

    def add(self, stats: pb.CallStats) -> None:
        with self._lock:
            for reported in stats.kinds:
                if len(reported.buckets) != len(CALL_BUCKETS) + 1:
                    continue  # a host of another release: other buckets, not comparable
                delta = KindCalls(
                    results={
                        "ok": reported.ok,
                        "error": reported.error,
                        "cancelled": reported.cancelled,
                    },
                    buckets=list(reported.buckets),
                    seconds=reported.seconds,
                )
                self._kinds.setdefault(reported.kind, KindCalls()).add(delta)

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(*CALLS, labels=["kind", "result"])
        yield HistogramMetricFamily(*CALL_SECONDS, labels=["kind"])

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily(*CALLS, labels=["kind", "result"])
        seconds = HistogramMetricFamily(*CALL_SECONDS, labels=["kind"])
        with self._lock:
            for kind, totals in sorted(self._kinds.items()):
                for result in RESULTS:
                    calls.add_metric([kind, result], totals.results.get(result, 0))
                cumulative, buckets = 0, []
                for bound, count in zip([*CALL_BUCKETS, float("inf")], totals.buckets, strict=True):
                    cumulative += count
                    buckets.append((_le(bound), cumulative))
                seconds.add_metric([kind], buckets, totals.seconds)
        yield calls
        yield seconds


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))
