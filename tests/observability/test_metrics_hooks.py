"""The event-derived metrics count what the effects say, and the handoff timer stays
bounded. In-process: real ``ReplicaReady`` values into a real ``NodeMetrics``; the
gauges (which read a running node) are covered by the process tests beside this one."""

from __future__ import annotations

import grpc
import pytest

from registry.core.membership import MemberAck, MemberHeartbeat
from registry.core.messages import Ready, Role, SoftState
from registry.core.replica import BeginHandoff, Effect, ReplicaReady, Start, Stop, StopReason
from registry.core.state import Activation, StartReason
from registry.node import metrics as metrics_module
from registry.node.metrics import NodeMetrics
from registry.node.peer_rtt import PENDING_LIMIT, RoundTrips
from registry.node.rpc_metrics import status_name


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ready(*effects: Effect, incarnation: int | None = None) -> ReplicaReady:
    return ReplicaReady(
        incarnation=incarnation,
        raft=Ready(),
        compaction=None,
        messages=(),
        effects=effects,
        applied=(),
    )


def start(name: str, token: int, reason: StartReason) -> Start:
    return Start(
        activation=Activation(
            name=name, kind="counter", args=b"", token=token, reason=reason, state=None
        )
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prom_hooks(clock: FakeClock) -> NodeMetrics:
    # Counters only: the gauges have no sources here (``read_from`` is never called).
    return NodeMetrics(clock=clock)


def _counters_only(m: NodeMetrics, name: str, **labels: str) -> float:
    for collector in (m.starts, m.failovers, m.handoffs, m.fences, m.handoff_seconds):
        for family in collector.collect():
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return sample.value
    raise AssertionError(f"{name}{labels} not found")


def test_starts_by_reason_and_failovers(prom_hooks: NodeMetrics) -> None:
    m = prom_hooks
    m.on_ready(
        ready(
            start("a", 3, StartReason.NEW),
            start("b", 4, StartReason.FAILOVER),
            start("c", 4, StartReason.FAILOVER),
            start("d", 5, StartReason.HANDOFF),
        )
    )
    count = _counters_only
    assert count(m, "registry_activations_started_total", reason="new") == 1
    assert count(m, "registry_activations_started_total", reason="failover") == 2
    assert count(m, "registry_activations_started_total", reason="handoff") == 1
    assert count(m, "registry_activations_started_total", reason="restart") == 0
    assert count(m, "registry_failovers_total") == 2
    assert count(m, "registry_fences_total") == 0


def test_a_fence_counts_once_per_ready(prom_hooks: NodeMetrics) -> None:
    m = prom_hooks
    quorum_lost = [Stop(name=n, token=1, reason=StopReason.QUORUM_LOST) for n in "ab"]
    m.on_ready(ready(*quorum_lost, incarnation=2))
    assert _counters_only(m, "registry_fences_total") == 1
    m.on_ready(ready(Stop(name="c", token=1, reason=StopReason.UNREGISTERED)))
    assert _counters_only(m, "registry_fences_total") == 1, "an unregister is no fence"
    m.on_ready(ready(incarnation=3))
    assert _counters_only(m, "registry_fences_total") == 2


def test_handoff_is_timed_from_begin_to_report(prom_hooks: NodeMetrics, clock: FakeClock) -> None:
    m = prom_hooks
    m.on_ready(ready(BeginHandoff(name="a", token=7, deadline_tick=99)))
    clock.now += 0.25
    m.handoff_finished("a", 8)  # another activation of the name: not this handoff
    m.handoff_finished("b", 7)
    assert _counters_only(m, "registry_handoff_seconds_count") == 0
    m.handoff_finished("a", 7)
    m.handoff_finished("a", 7)  # a second report of the same handoff is not observed
    assert _counters_only(m, "registry_handoffs_total") == 1
    assert _counters_only(m, "registry_handoff_seconds_count") == 1
    assert _counters_only(m, "registry_handoff_seconds_sum") == pytest.approx(0.25)
    assert _counters_only(m, "registry_handoff_seconds_bucket", le="0.25") == 1
    assert _counters_only(m, "registry_handoff_seconds_bucket", le="0.1") == 0


def test_a_stop_abandons_the_pending_handoff(prom_hooks: NodeMetrics, clock: FakeClock) -> None:
    m = prom_hooks
    m.on_ready(ready(BeginHandoff(name="a", token=7, deadline_tick=99)))
    m.on_ready(ready(Stop(name="a", token=7, reason=StopReason.QUORUM_LOST), incarnation=2))
    clock.now += 1
    m.handoff_finished("a", 7)
    assert _counters_only(m, "registry_handoff_seconds_count") == 0


def test_pending_handoffs_are_bounded(
    prom_hooks: NodeMetrics, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metrics_module, "MAX_PENDING_HANDOFFS", 3)
    m = prom_hooks
    m.on_ready(ready(*(BeginHandoff(name=f"n{i}", token=i, deadline_tick=9) for i in range(5))))
    assert len(m._handoffs_pending) == 3
    clock.now += 1
    for i in range(5):
        m.handoff_finished(f"n{i}", i)
    # The two oldest were forgotten; the three newest were timed.
    assert _counters_only(m, "registry_handoff_seconds_count") == 3
    assert not m._handoffs_pending


def test_status_names() -> None:
    assert status_name(None) == "OK"
    assert status_name(grpc.StatusCode.NOT_FOUND) == "NOT_FOUND"
    assert status_name(5) == "NOT_FOUND"
    assert status_name(0) == "OK"
    assert status_name(999) == "UNKNOWN"
    assert status_name("weird") == "UNKNOWN"


def leader_ready(leader: str) -> ReplicaReady:
    role = Role.LEADER if leader == "n1" else Role.FOLLOWER
    return ReplicaReady(
        incarnation=None,
        raft=Ready(soft_state=SoftState(leader=leader, role=role)),
        compaction=None,
        messages=(),
        effects=(),
        applied=(),
    )


def test_leader_changes_count_each_new_leader_not_the_first(prom_hooks: NodeMetrics) -> None:
    m = prom_hooks
    assert m.registry.get_sample_value("registry_leader_changes_total") == 0
    for leader in ("n1", "n1", "", "n2", "n2", "n3", "n1"):
        m.on_ready(leader_ready(leader))
    # n1 (first: no change), n1 again, "" (no leader known: not a change), then n2, n3, n1.
    assert m.registry.get_sample_value("registry_leader_changes_total") == 3


def test_lease_round_trips_pair_heartbeats_with_their_acks() -> None:
    clock = FakeClock()
    seen: list[tuple[str, float]] = []
    trips = RoundTrips(lambda peer, seconds: seen.append((peer, seconds)), clock=clock)
    trips.sent(MemberHeartbeat(src="n2", dst="n1", seq=1, incarnation=1))
    trips.sent(MemberHeartbeat(src="n2", dst="n1", seq=2, incarnation=1))
    clock.now += 0.004
    trips.received(MemberAck(src="n1", dst="n2", seq=2, incarnation=1))
    trips.received(MemberAck(src="n1", dst="n2", seq=2, incarnation=1))  # a duplicate: once
    trips.received(MemberAck(src="n3", dst="n2", seq=1, incarnation=1))  # not sent to n3
    assert [peer for peer, _ in seen] == ["n1"] and seen[0][1] == pytest.approx(0.004)
    for seq in range(3, 3 + PENDING_LIMIT + 10):  # unanswered ones stay bounded
        trips.sent(MemberHeartbeat(src="n2", dst="n1", seq=seq, incarnation=1))
    trips.received(MemberAck(src="n1", dst="n2", seq=1, incarnation=1))  # forgotten: oldest
    assert len(seen) == 1
