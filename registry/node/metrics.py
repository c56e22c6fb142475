"""Prometheus metrics of one node, read from the replica when scraped.

Gauges are computed on collection (a custom collector), so the core loop does no metrics
work per event; counters that need events (handoffs, failovers, fences) are derived from
the effects the node runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from registry.core.messages import Role
from registry.core.replica import BeginHandoff, ReplicaReady, Start, Stop, StopReason
from registry.core.state import StartReason

if TYPE_CHECKING:
    from registry.node.server import Node


class NodeMetrics(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node
        self.registry = CollectorRegistry()
        self.registry.register(self)
        self.starts = Counter(
            "registry_activations_started_total",
            "Activations started on this node, by start reason.",
            ["reason"],
            registry=self.registry,
        )
        self.handoffs = Counter(
            "registry_handoffs_begun_total",
            "begin_handoff requests this node ran for names moving away.",
            registry=self.registry,
        )
        self.fences = Counter(
            "registry_fences_total",
            "Times this node lost its lease and stopped its workers.",
            registry=self.registry,
        )
        self.rpc_latency = Histogram(
            "registry_rpc_seconds",
            "Client RPC latency on this node, by method.",
            ["method"],
            registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def on_ready(self, ready: ReplicaReady) -> None:
        fenced = False
        for effect in ready.effects:
            if isinstance(effect, Start):
                self.starts.labels(effect.activation.reason.value).inc()
            elif isinstance(effect, BeginHandoff):
                self.handoffs.inc()
            elif isinstance(effect, Stop) and effect.reason is StopReason.QUORUM_LOST:
                fenced = True
        if fenced or ready.incarnation is not None:
            self.fences.inc()

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        driver = self.node.driver
        replica = driver.replica
        raft = replica.raft
        state = replica.state

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, value=value)

        yield gauge("registry_raft_term", "Current Raft term.", raft.term)
        yield gauge("registry_raft_commit_index", "Raft commit index.", raft.commit_index)
        yield gauge("registry_raft_applied_index", "Applied index.", raft.applied_index)
        yield gauge("registry_raft_is_leader", "1 if this node leads.", raft.role is Role.LEADER)
        yield gauge("registry_quorum", "1 if this node holds a member lease.", driver.lease_holds())
        yield gauge(
            "registry_lease_remaining_seconds",
            "Seconds left on this member's lease.",
            driver.lease_remaining_s(),
        )
        members = GaugeMetricFamily(
            "registry_members", "Members in the view, by state.", labels=["state"]
        )
        up = sum(1 for m in state.members.values() if m.up)
        members.add_metric(["up"], up)
        members.add_metric(["down"], len(state.members) - up)
        yield members
        yield gauge("registry_names", "Registered names.", len(state.names))
        yield gauge(
            "registry_names_waiting", "Names with no eligible member.", len(state.waiting())
        )
        yield gauge(
            "registry_activations",
            "Activations running on this node.",
            len(self.node.runtime.running()),
        )
        failovers = sum(1 for r in state.names.values() if r.reason is StartReason.FAILOVER)
        yield gauge(
            "registry_names_last_started_by_failover",
            "Names whose current activation came from a failover.",
            failovers,
        )
