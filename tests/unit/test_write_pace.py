"""Write pacing (``registry.core.write_pace``): a leader holds client writes back while
a leased member is behind in applying, and only then."""

from __future__ import annotations

from collections.abc import Callable

from registry.core.commands import NameSpec, Register
from registry.core.membership import MemberAck
from registry.core.messages import Message, MessageType
from registry.core.replica import PeerMessage
from registry.core.write_pace import WritePace
from tests.unit.test_replica import follower, formed


def no_log_to(node: str) -> Callable[[PeerMessage], bool]:
    """A network filter: ``node`` hears the leader's heartbeats but gets no log."""

    def keep(msg: PeerMessage) -> bool:
        return not (
            isinstance(msg, Message)
            and msg.dst == node
            and msg.type in (MessageType.APPEND, MessageType.SNAPSHOT)
        )

    return keep


def test_due_index_is_the_last_index_lag_ticks_ago() -> None:
    pace = WritePace(lag_tick=3)
    for tick, index in [(1, 10), (2, 11), (3, 12), (4, 20), (5, 30)]:
        pace.record(tick, index)
    assert pace.due_index(5) == 11  # what the leader had at tick 2
    assert pace.lagging(5, [11, 40]) is False
    assert pace.lagging(5, [10, 40]) is True
    pace.reset()
    assert pace.due_index(5) == 0, "a new leader has no history: nothing is due yet"
    assert pace.lagging(5, [0]) is False


def test_a_leased_member_that_applies_behind_holds_writes_until_it_catches_up() -> None:
    cluster = formed()
    slow = follower(cluster)
    leader = cluster.leader()
    assert not leader.writes_lag()
    cluster.filters.append(no_log_to(slow))
    leader.propose(Register(specs=(NameSpec(name="a", kind="k"),)))
    cluster.tick_until(leader.writes_lag, limit=20)
    assert cluster.nodes[slow].agent.has_lease(), "it lags while still leased"
    assert cluster.nodes[slow].raft.applied_index < leader.raft.last_index
    cluster.filters.clear()
    cluster.tick_until(lambda: not leader.writes_lag(), limit=20)
    assert cluster.nodes[slow].raft.applied_index == leader.raft.last_index


def test_a_member_without_a_lease_does_not_hold_writes() -> None:
    """It has nothing to lose by lagging, and a cut-off member must not stop writes."""
    cluster = formed()
    slow = follower(cluster)
    leader = cluster.leader()
    cluster.filters.append(no_log_to(slow))
    # A log that lags no longer costs a lease (membership rule 3): take its acks too.
    cluster.filters.append(lambda msg: not (isinstance(msg, MemberAck) and msg.dst == slow))
    leader.propose(Register(specs=(NameSpec(name="a", kind="k"),)))
    cluster.tick_until(lambda: not cluster.nodes[slow].agent.has_lease(), limit=100)
    cluster.tick(cluster.timing.membership().heartbeat_tick * 2)
    assert cluster.nodes[slow].raft.applied_index < leader.raft.last_index
    assert not leader.writes_lag()
