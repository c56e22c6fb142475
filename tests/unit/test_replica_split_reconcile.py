"""A Ready that applies a big change leaves its reconcile to the next Ready
(``Replica._reconcile_due``), so the shell's loop turns in between and answers its
leader (issue 13: a survivor applying a failover of 25k names and reconciling every name
it held in one Ready went 1.3 s without a word on 2 loaded cores). A fence is never put
off."""

from __future__ import annotations

from dataclasses import replace

from registry.core.commands import NameSpec, Register, Unregister
from registry.core.messages import Message, MessageType
from registry.core.replica import PeerMessage, ReplicaReady, Start, Stop
from registry.core.timing import Timing
from tests.unit.replicanet import Cluster

LIMIT = 40
"""``max_reconcile_names`` here: the down member holds more than this."""
NAMES = 400


def _cluster() -> Cluster:
    timing = Timing().validate()
    membership = replace(timing.membership(), max_reconcile_names=LIMIT)
    c = Cluster(("n1", "n2", "n3", "n4"), membership=membership)
    c.tick_until(
        lambda: (
            len(c.leaders()) == 1
            and all(
                len(r.state.up_members()) == 4 and r.agent.has_lease() for r in c.nodes.values()
            )
        )
    )
    specs = tuple(NameSpec(name=f"w{i}", kind="k") for i in range(NAMES))
    c.propose(Register(specs=specs))
    c.tick_until(lambda: sum(len(r) for r in c.running.values()) == NAMES)
    return c


def _record(c: Cluster, node: str) -> list[ReplicaReady]:
    readies: list[ReplicaReady] = []
    c.tee_readies(node, readies.append)
    return readies


def test_a_failover_applied_in_one_ready_is_reconciled_in_the_next() -> None:
    c = _cluster()
    leader = c.leader().id
    victim, watched = [n for n in c.ids if n != leader][:2]
    held = len(c.running[victim])
    assert held > LIMIT
    readies = _record(c, watched)
    c.isolate(victim)
    c.tick_until(
        lambda: (
            len(c.running[watched]) + len(c.running[leader]) > 0
            and all(not c.nodes[n].state.members[victim].up for n in c.ids if n != victim)
        )
    )
    c.tick_until(lambda: sum(len(c.running[n]) for n in c.ids if n != victim) == NAMES)
    down = next(i for i, rd in enumerate(readies) if len(rd.changed) == held)
    assert readies[down].effects == (), (
        f"the Ready that applied the failover of {held} names also reconciled: "
        f"{len(readies[down].effects)} effects"
    )
    after = readies[down + 1]
    starts = [e for e in after.effects if isinstance(e, Start)]
    assert starts, "the next Ready starts the names the failover gave this member"
    assert c.violations == []


def test_a_fence_is_not_put_off() -> None:
    """A member whose lease lapses in the very Ready that applies a big change stops its
    workers in that Ready: only the reconcile of the change may wait, never a fence."""
    c = _cluster()
    leader = c.leader().id
    watched = next(n for n in c.ids if n != leader)
    replica = c.nodes[watched]
    running = len(c.running[watched])
    held: list[PeerMessage] = []

    def divert(msg: PeerMessage) -> bool:
        if msg.dst == watched:
            held.append(msg)
            return False
        return True

    c.filters.append(divert)
    big = NameSpec(name="x0", kind="k")
    index = c.propose(Register(specs=tuple(replace(big, name=f"x{i}") for i in range(NAMES))))
    c.tick_until(lambda: replica.agent.lease_remaining() <= 1)
    c.filters.remove(divert)
    for msg in held:  # the log it missed, right before the lapse (acks stay lost)
        if isinstance(msg, Message):
            replica.step(msg)
    assert replica.raft.commit_index >= index
    readies = _record(c, watched)
    c.tick()
    assert not replica.agent.has_lease()
    first = readies[0]
    assert len(first.changed) > LIMIT, "the lapse came in the Ready that applied the change"
    stops = [e for e in first.effects if isinstance(e, Stop)]
    assert len(stops) == running, f"{len(stops)} of {running} workers stopped at the fence"


def test_a_stop_that_comes_with_a_view_change_is_not_queued_behind_it() -> None:
    """After a view change a member reconciles its held names in chunks, but a name
    whose own record changed in the same Ready (here: unregistered) stops at once, not
    when its chunk comes (it sorts after every other name that member holds)."""
    timing = Timing().validate()
    membership = replace(timing.membership(), max_reconcile_names=LIMIT)
    ids = ("n1", "n2", "n3", "n4", "n5")
    c = Cluster(ids, membership=membership)
    c.tick_until(
        lambda: (
            len(c.leaders()) == 1
            and all(
                len(r.state.up_members()) == 5 and r.agent.has_lease() for r in c.nodes.values()
            )
        )
    )
    c.propose(Register(specs=tuple(NameSpec(name=f"w{i:03}", kind="k") for i in range(NAMES))))
    c.tick_until(lambda: sum(len(r) for r in c.running.values()) == NAMES)
    leader = c.leader().id
    holder, victim = [n for n in ids if n != leader][:2]
    assert len(c.running[holder]) > LIMIT
    last = max(c.running[holder])
    replica = c.nodes[holder]
    held: list[PeerMessage] = []

    def divert(msg: PeerMessage) -> bool:  # its appends only: it keeps leader and lease
        if msg.dst == holder and isinstance(msg, Message) and msg.type is MessageType.APPEND:
            held.append(msg)
            return False
        return True

    c.filters.append(divert)
    c.propose(Unregister(name=last))
    c.isolate(victim)
    c.tick_until(lambda: not c.leader().state.members[victim].up)
    c.filters.remove(divert)
    assert replica.state.members[victim].up and last in c.running[holder]
    readies = _record(c, holder)
    for msg in held:
        replica.step(msg)
    c.tick()
    assert not replica.state.members[victim].up
    first = next(rd for rd in readies if rd.effects)
    stops = [e.name for e in first.effects if isinstance(e, Stop)]
    assert last in stops, f"{last} not stopped with the view change: {len(first.effects)} effects"
