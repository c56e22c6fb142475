"""Prometheus metrics of one node (reference: ``docs/metrics.md``).

Gauges are read from the replica when scraped (a custom collector), so the core loop does
no metrics work per event. Counters that need events (handoffs, failovers, fences) are
derived from the effects the node runs (``on_ready``); handoff durations from the
runtime's reports (``handoff_finished``); RPC latency from a server interceptor
(``registry.node.rpc_metrics``).

Naming follows Prometheus conventions: ``registry_`` prefix, base units (seconds),
``_total`` on counters, and bounded labels only — never a name or a worker as a label
value, so a cluster with a million names still exports a few dozen series per node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from registry.core.messages import Role
from registry.core.replica import BeginHandoff, ReplicaReady, Start, Stop, StopReason
from registry.core.state import StartReason
from registry.node.call_metrics import CallsByKind
from registry.node.seams import DiskStatus, Replicated, WorkerStatus

__all__ = ["MAX_PENDING_HANDOFFS", "NodeMetrics"]

RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
"""Seconds. Local lookups take well under a millisecond; writes wait for an fsync'd
commit (milliseconds); calls forward to workers and may take up to their deadline."""
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
"""Seconds: an NVMe fdatasync takes well under a millisecond, a cloud volume several."""
HANDOFF_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""Seconds; ``begin_handoff`` has a deadline (``handoff_deadline``, seconds to a minute)."""
MAX_PENDING_HANDOFFS = 10_000
"""Handoffs begun but not yet reported done that are remembered for timing. A handoff
whose report never comes (its worker was fenced first, say) would otherwise stay forever;
past this bound the oldest is forgotten (and not observed)."""


GAUGES = {
    "registry_raft_term": "Current Raft term.",
    "registry_raft_commit_index": "Highest log index known to be committed.",
    "registry_raft_applied_index": "Highest log index applied to this replica's state.",
    "registry_raft_is_leader": "1 if this node is the Raft leader, else 0.",
    "registry_quorum": "1 if this node holds a member lease (may run workers), else 0.",
    "registry_lease_remaining_seconds": "Seconds left on this node's member lease.",
    "registry_names": "Registered names cluster-wide, as this node's replica sees them.",
    "registry_names_waiting": "Registered names with no eligible member to run them.",
    "registry_activations": "Activations running on this node (summed over nodes: the "
    "names running).",
}
"""Name → help of the single-value gauges, read from the node at each scrape."""
MEMBERS = ("registry_members", "Members in this replica's view, by state (up, down, draining).")
MEMBER_STATES = ("up", "down", "draining")
STORAGE_ALARM = (
    "registry_storage_alarm",
    "1 while this node's storage alarm of that kind is on (nospace: free space on the data "
    "directory below storage_reserve_bytes; client writes are refused), else 0.",
)
STORAGE_FREE = (
    "registry_storage_free_bytes",
    "Free bytes on the data directory's file system at the last check.",
)
HOST_ACTIVATIONS = (
    "registry_host_activations",
    "Activations running in each worker host process of this node (host = its index; "
    "summed over hosts: registry_activations).",
)
HOST_RESTARTS = (
    "registry_host_restarts",
    "Times each worker host process of this node died (crash, kill -9, or killed by the "
    "control process for outliving its lease) and was started again.",
)


class NodeMetrics(Collector):
    """Every metric of one node, on the node's own ``CollectorRegistry`` (``registry``)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._sources: _Sources | None = None
        self._clock = clock
        self._handoffs_pending: dict[tuple[str, int], float] = {}
        # No *_created series: they double the series count, and Prometheus detects
        # counter resets without them (a node process is the only user of this toggle).
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.registry.register(self)
        # The standard process_* / python_* series (RSS, CPU, open fds, GC), for this
        # registry: the node does not export the global default registry.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.starts = Counter(
            "registry_activations_started_total",
            "Activations started on this node, by start reason (new, failover, handoff, restart).",
            ["reason"],
            registry=self.registry,
        )
        for reason in StartReason:
            self.starts.labels(reason.value)  # every series exists from the start, at 0
        self.failovers = Counter(
            "registry_failovers_total",
            "Activations this node started because their previous holder was declared down.",
            registry=self.registry,
        )
        self.handoffs = Counter(
            "registry_handoffs_total",
            "Handoffs this node began (begin_handoff) for names moving away from it.",
            registry=self.registry,
        )
        self.fences = Counter(
            "registry_fences_total",
            "Times this node lost its lease with workers running and stopped them.",
            registry=self.registry,
        )
        self.handoff_seconds = Histogram(
            "registry_handoff_seconds",
            "Time from begin_handoff on this (old) owner until the worker was stopped and "
            "its state released, or it answered Ignore().",
            registry=self.registry,
            buckets=HANDOFF_BUCKETS,
        )
        self.rpc_seconds = Histogram(
            "registry_rpc_seconds",
            "Latency of the client API (registry.v1.Registry) on this node, by method; "
            "the Watch stream is not timed.",
            ["method"],
            registry=self.registry,
            buckets=RPC_BUCKETS,
        )
        self.gc_pause_seconds = Histogram(
            "registry_gc_pause_seconds",
            "Time CPython's garbage collector stopped this node's event loop, by generation.",
            ["generation"],
            registry=self.registry,
            buckets=RPC_BUCKETS,
        )
        self.event_loop_lag_seconds = Histogram(
            "registry_event_loop_lag_seconds",
            "How late this node's event loop ran a 50 ms timer (heartbeats, lease "
            "renewals and sub-leases all wait for its turns).",
            registry=self.registry,
            buckets=RPC_BUCKETS,
        )
        self.rpc_errors = Counter(
            "registry_rpc_errors_total",
            "Client API calls on this node that ended with a status other than OK, by "
            "method and gRPC status code name.",
            ["method", "code"],
            registry=self.registry,
        )
        self.fsync_seconds = Histogram(
            "registry_fsync_seconds",
            "Time each fdatasync of this node's Raft log took (every acknowledged write "
            "waits for one on a majority).",
            registry=self.registry,
            buckets=FSYNC_BUCKETS,
        )
        self.peer_rtt_seconds = Histogram(
            "registry_peer_rtt_seconds",
            "Member-lease round trip to the leader, by peer: heartbeat sent to ack "
            "received (network both ways plus the leader's core-loop turn; "
            "registry/node/peer_rtt.py). The leader itself reports none.",
            ["peer"],
            registry=self.registry,
            buckets=RPC_BUCKETS,
        )
        self.leader_changes = Counter(
            "registry_leader_changes_total",
            "Times the leader this node knows changed to another node (elections and "
            "transfers seen here).",
            registry=self.registry,
        )
        self._leader = ""
        self.calls = CallsByKind(self.registry)
        self.peer_refused = Counter(
            "registry_peer_messages_refused_total",
            "Peer messages (and peer streams) this node dropped before its core saw them, "
            "by reason (registry/node/peer_guard.py lists them).",
            ["reason"],
            registry=self.registry,
        )

    def read_from(self, replicated: Replicated, runtime: WorkerStatus, disk: DiskStatus) -> None:
        """Where the gauges are read when scraped (until then, only counters exist)."""
        self._sources = _Sources(replicated=replicated, runtime=runtime, disk=disk)

    # -- event hooks -------------------------------------------------------------------

    def on_ready(self, ready: ReplicaReady) -> None:
        """Count the effects of one Ready (called before the runtime runs them)."""
        soft = ready.raft.soft_state
        if soft is not None and soft.leader and soft.leader != self._leader:
            if self._leader:
                self.leader_changes.inc()  # the first leader this process learns is no change
            self._leader = soft.leader
        fenced = ready.incarnation is not None  # a new incarnation is only taken to fence
        starts: dict[StartReason, int] = {}  # counted first: labels() per start cost 2 %
        for effect in ready.effects:
            if isinstance(effect, Start):
                reason = effect.activation.reason
                starts[reason] = starts.get(reason, 0) + 1
            elif isinstance(effect, BeginHandoff):
                self.handoffs.inc()
                self._handoff_begun(effect.name, effect.token)
            elif isinstance(effect, Stop):
                # A stop overtakes a pending handoff (fenced first): nothing to time.
                self._handoffs_pending.pop((effect.name, effect.token), None)
                if effect.reason is StopReason.QUORUM_LOST:
                    fenced = True
        for reason, count in starts.items():
            self.starts.labels(reason.value).inc(count)
            if reason is StartReason.FAILOVER:
                self.failovers.inc(count)
        if fenced:
            self.fences.inc()

    def handoff_finished(self, name: str, token: int) -> None:
        """The runtime reported the handoff of ``name`` (activation ``token``) done or
        ignored: observe how long it took since ``begin_handoff``."""
        begun = self._handoffs_pending.pop((name, token), None)
        if begun is not None:
            self.handoff_seconds.observe(max(0.0, self._clock() - begun))

    def _handoff_begun(self, name: str, token: int) -> None:
        pending = self._handoffs_pending
        pending.pop((name, token), None)  # asked again (a new epoch): time from the latest
        while len(pending) >= MAX_PENDING_HANDOFFS:
            del pending[next(iter(pending))]  # dicts keep insertion order: oldest first
        pending[(name, token)] = self._clock()

    # -- collector ---------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        """The gauges' names and help, without reading the node (it may not be up)."""
        for name, doc in GAUGES.items():
            yield GaugeMetricFamily(name, doc)
        yield GaugeMetricFamily(*MEMBERS, labels=["state"])
        yield GaugeMetricFamily(*STORAGE_ALARM, labels=["kind"])
        yield GaugeMetricFamily(*STORAGE_FREE)
        yield GaugeMetricFamily(*HOST_ACTIVATIONS, labels=["host"])
        yield CounterMetricFamily(*HOST_RESTARTS, labels=["host"])

    def collect(self) -> Iterator[Metric]:
        sources = self._sources
        if sources is None:
            return
        values = _gauge_values(sources)
        for name, doc in GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=values[name])
        members = GaugeMetricFamily(*MEMBERS, labels=["state"])
        counts = {state: 0 for state in MEMBER_STATES}
        for member in sources.replicated.view.state.members.values():
            counts["down" if not member.up else "draining" if member.draining else "up"] += 1
        for state in MEMBER_STATES:
            members.add_metric([state], counts[state])
        yield members
        alarm = GaugeMetricFamily(*STORAGE_ALARM, labels=["kind"])
        alarm.add_metric(["nospace"], float(sources.disk.active))
        yield alarm
        yield GaugeMetricFamily(*STORAGE_FREE, value=sources.disk.free_bytes)
        activations = GaugeMetricFamily(*HOST_ACTIVATIONS, labels=["host"])
        restarts = CounterMetricFamily(*HOST_RESTARTS, labels=["host"])
        for host in sources.runtime.hosts():
            activations.add_metric([str(host["id"])], host["activations"])
            restarts.add_metric([str(host["id"])], host["restarts"])
        yield activations
        yield restarts


@dataclass(frozen=True, slots=True, kw_only=True)
class _Sources:
    replicated: Replicated
    runtime: WorkerStatus
    disk: DiskStatus


def _gauge_values(sources: _Sources) -> dict[str, float]:
    driver = sources.replicated
    raft = driver.view
    state = raft.state
    return {
        "registry_raft_term": raft.term,
        "registry_raft_commit_index": raft.commit_index,
        "registry_raft_applied_index": raft.applied_index,
        "registry_raft_is_leader": float(raft.role is Role.LEADER),
        "registry_quorum": float(driver.lease_holds()),
        "registry_lease_remaining_seconds": driver.lease_remaining_s(),
        # An unregistered name whose holder has not confirmed the stop is gone for
        # clients (as in the Cluster RPC's count).
        "registry_names": state.live_count(),
        "registry_names_waiting": len(state.waiting()),
        "registry_activations": len(sources.runtime.running()),
    }
