"""Three Replicas on a synchronous network (tests/unit/replicanet.py): leases, activations,
fencing on isolation, failover, and handoff on heal — with G1/G2 checked at every Start."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from registry.core.commands import (
    InvalidCommand,
    MemberDown,
    MemberUp,
    NameSpec,
    Register,
    Released,
    Releases,
    Unregister,
    decode,
    encode,
)
from registry.core.controls import ProposeConfChange, TransferLeadership
from registry.core.errors import NotLeader
from registry.core.membership import MemberAck, MemberHeartbeat
from registry.core.messages import (
    ConfChange,
    ConfChangeType,
    Handover,
    MemberSilence,
    Message,
    MessageType,
    Role,
)
from registry.core.replica import BeginHandoff, Forward, PeerMessage, Start, Stop, StopReason
from registry.core.state import Code, StartReason
from registry.core.timing import MembershipConfig, Timing
from tests.unit.replicanet import Cluster

NAMES = [f"w{i}" for i in range(20)]


def formed(
    seed: int = 7,
    ids: tuple[str, ...] = ("n1", "n2", "n3"),
    membership: MembershipConfig | None = None,
) -> Cluster:
    cluster = Cluster(ids, seed=seed, membership=membership)
    cluster.tick_until(
        lambda: (
            len(cluster.leaders()) == 1
            and all(len(r.state.up_members()) == len(ids) for r in cluster.nodes.values())
            and all(r.agent.has_lease() for r in cluster.nodes.values())
        ),
        limit=100,
    )
    return cluster


def register_all(cluster: Cluster, names: list[str] = NAMES) -> int:
    index = cluster.propose(Register(specs=tuple(NameSpec(name=n, kind="k") for n in names)))
    cluster.tick(2)
    return index


def follower(cluster: Cluster) -> str:
    return next(n for n in cluster.ids if n not in cluster.leaders())


def test_a_cluster_forms_with_every_member_up_and_leased() -> None:
    cluster = formed()
    leader = cluster.leader()
    assert all(r.raft.leader == leader.id for r in cluster.nodes.values())
    for replica in cluster.nodes.values():
        members = replica.state.members
        assert sorted(members) == ["n1", "n2", "n3"]
        assert all(m.up and m.incarnation == 1 for m in members.values())
        assert {m.address for m in members.values()} == {"n1:7000", "n2:7000", "n3:7000"}
        assert replica.agent.has_lease()
    cluster.tick(100)
    assert all(r.agent.has_lease() for r in cluster.nodes.values()), "leases keep renewing"
    assert cluster.fences == [], "nobody fenced in a healthy cluster"
    assert cluster.violations == []


def test_proposals_go_through_the_leader_only() -> None:
    cluster = formed()
    with pytest.raises(NotLeader):
        cluster.nodes[follower(cluster)].propose(Unregister(name="x"))


def test_each_registered_name_starts_exactly_once_on_its_owner() -> None:
    cluster = formed()
    index = register_all(cluster)
    leader = cluster.leader()
    applied = [a for a in cluster.applied[leader.id] if a.index == index]
    assert len(applied) == 1 and applied[0].result.ok
    starts = cluster.starts()
    assert sorted(s.activation.name for s in starts) == sorted(NAMES)
    by_node = {
        e.effect.activation.name: e.node for e in cluster.events if isinstance(e.effect, Start)
    }
    for start in starts:
        act = start.activation
        owner = leader.state.owner(act.name)
        assert by_node[act.name] == owner
        assert (act.token, act.reason, act.state, act.kind) == (index, StartReason.NEW, None, "k")
        for replica in cluster.nodes.values():
            assert replica.state.names[act.name].holder == owner, "every replica agrees"
    assert len({by_node[n] for n in NAMES}) == 3, "spread over the cluster"
    for node, replica in cluster.nodes.items():
        assert replica.running() == cluster.running[node]
    cluster.tick(50)
    assert len(cluster.starts()) == len(NAMES), "no restarts while healthy"
    assert cluster.stops() == []
    assert cluster.violations == []


@pytest.mark.parametrize("victim_is_leader", [False, True], ids=["follower", "leader"])
def test_an_isolated_node_fences_before_its_names_fail_over(victim_is_leader: bool) -> None:
    cluster = formed()
    index = register_all(cluster)
    victim = cluster.leaders()[0] if victim_is_leader else follower(cluster)
    names = sorted(cluster.running[victim])
    assert names
    mark = len(cluster.events)
    cluster.isolate(victim)
    ticks = cluster.tick_until(
        lambda: all(cluster.where(n) and victim not in cluster.where(n) for n in names)
    )
    assert ticks * cluster.timing.tick <= 3.0, "G4: failover within 3 s (lan preset)"
    events = cluster.events[mark:]
    stops = [
        (i, e.effect)
        for i, e in enumerate(events)
        if e.node == victim and isinstance(e.effect, Stop)
    ]
    assert sorted(s.name for _, s in stops) == names
    assert all(s.reason is StopReason.QUORUM_LOST and s.token == index for _, s in stops)
    fence = [(pos - mark, inc) for pos, node, inc in cluster.fences if node == victim]
    assert [inc for _, inc in fence] == [2], "one new incarnation"
    assert fence[0][0] <= stops[0][0], "the incarnation is persisted before the stops run"
    failovers = [
        (i, e.node, e.effect.activation)
        for i, e in enumerate(events)
        if isinstance(e.effect, Start) and e.effect.activation.name in names
    ]
    assert sorted(a.name for _, _, a in failovers) == names
    last_stop = max(i for i, _ in stops)
    for i, node, act in failovers:
        assert i > last_stop, f"{act.name} started on {node} before {victim} stopped it"
        assert node != victim
        assert act.reason is StartReason.FAILOVER
        assert act.token > index
        assert act.state is None
    survivors = [n for n in cluster.ids if n != victim]
    new_leader = next(cluster.nodes[n] for n in survivors if n in cluster.leaders())
    assert not new_leader.state.members[victim].up
    assert cluster.violations == []


def isolate_and_fail_over(cluster: Cluster) -> tuple[str, list[str]]:
    victim = follower(cluster)
    names = sorted(cluster.running[victim])
    cluster.isolate(victim)
    cluster.tick_until(
        lambda: all(cluster.where(n) and victim not in cluster.where(n) for n in names)
    )
    return victim, names


def healed_with_handoffs_asked() -> tuple[Cluster, str, list[str]]:
    """A follower's names failed over while it was cut off; it is back, and every name
    that moves back to it has been asked to hand off."""
    cluster = formed()
    register_all(cluster)
    victim, names = isolate_and_fail_over(cluster)
    cluster.heal()
    cluster.tick_until(lambda: sum(len(h) for h in cluster.handoffs.values()) == len(names))
    return cluster, victim, names


def test_after_a_heal_names_come_back_through_handoff_with_state() -> None:
    cluster = formed()
    register_all(cluster)
    victim, names = isolate_and_fail_over(cluster)
    tokens = {n: cluster.running[cluster.where(n)[0]][n] for n in names}
    mark = len(cluster.events)
    cluster.heal()
    leader = cluster.leader()
    cluster.tick_until(
        lambda: leader.state.members[victim].up and leader.state.members[victim].incarnation == 2
    )
    rejoin = [
        a
        for a in cluster.applied[leader.id]
        if isinstance(a.command, MemberUp) and a.command.node == victim
    ]
    assert rejoin[-1].command == MemberUp(
        node=victim, incarnation=2, address=f"{victim}:7000", roles=(), kinds=()
    )
    cluster.tick_until(lambda: sum(len(h) for h in cluster.handoffs.values()) == len(names))
    asked = {
        name: (node, req) for node, reqs in cluster.handoffs.items() for name, req in reqs.items()
    }
    assert sorted(asked) == names, "exactly the names whose owner came back"
    assert {node for node, _ in asked.values()} - {leader.id}, "a follower releases too"
    for name, (node, request) in asked.items():
        assert isinstance(request, BeginHandoff)
        assert request.token == tokens[name]
        assert request.deadline_tick > cluster.nodes[node].agent.ticks
        assert cluster.where(name) == [node], "still running where it is while asked"
    for name, (node, _) in sorted(asked.items()):
        cluster.handoff_done(node, name, f"state of {name}".encode())
        assert name not in cluster.running[node]
    cluster.tick_until(lambda: all(cluster.where(n) == [victim] for n in names))
    starts = [e.effect.activation for e in cluster.events[mark:] if isinstance(e.effect, Start)]
    assert sorted(a.name for a in starts) == names
    for act in starts:
        assert act.reason is StartReason.HANDOFF
        assert act.state == f"state of {act.name}".encode()
        assert act.token > tokens[act.name]
        assert cluster.nodes[victim].state.names[act.name].token == act.token
    assert not [e for e in cluster.events[mark:] if isinstance(e.effect, Stop)], (
        "a handoff needs no Stop: the runtime stopped the worker itself"
    )
    for name in NAMES:
        assert cluster.where(name) == [leader.state.owner(name)]
    assert cluster.violations == []


def test_a_member_hands_off_at_most_its_window_at_once() -> None:
    """``max_handoffs_in_flight``: a member with many names to move asks that many at a
    time and the next ones as earlier ones finish (all at once, a 100k-name rebalance
    overloaded every node and cost leases). Every name still gets there, with state."""
    window = 3
    cluster = formed(membership=replace(Timing().membership(), max_handoffs_in_flight=window))
    many = [f"w{i}" for i in range(60)]
    register_all(cluster, many)
    victim, names = isolate_and_fail_over(cluster)
    assert len(names) > window
    cluster.heal()
    moved: set[str] = set()
    for _ in range(2000):
        if all(cluster.where(n) == [victim] for n in names):
            break
        for node, requests in cluster.handoffs.items():
            assert len(requests) <= window, f"{node} has {len(requests)} handoffs open"
            if requests:
                name = sorted(requests)[0]
                cluster.handoff_done(node, name, f"state of {name}".encode())
                moved.add(name)
        cluster.tick()
    assert all(cluster.where(n) == [victim] for n in names), "every name moved back"
    assert moved == set(names)
    back = {
        e.effect.activation.name: e.effect.activation
        for e in cluster.events
        if e.node == victim and isinstance(e.effect, Start)
    }
    for name in names:
        assert back[name].reason is StartReason.HANDOFF
        assert back[name].state == f"state of {name}".encode()
    assert cluster.violations == []


def test_a_big_pass_starts_and_hands_off_in_chunks_but_stops_at_once() -> None:
    """``max_reconcile_names``: a failover's starts and a heal's handoffs go out at most
    that many per Ready (one Ready starting ~9k activations at 100k names cost member
    leases); a fence's stops all leave in one Ready, since they are what keeps G1."""
    chunk = 4
    cluster = formed(membership=replace(Timing().membership(), max_reconcile_names=chunk))
    register_all(cluster, [f"w{i}" for i in range(60)])
    per_ready: list[tuple[str, int, int, int]] = []
    for node, replica in cluster.nodes.items():
        ready = replica.ready

        def counted(ready: Any = ready, node: str = node) -> Any:
            out = ready()
            kinds = [type(e) for e in out.effects]
            per_ready.append(
                (node, kinds.count(Start), kinds.count(BeginHandoff), kinds.count(Stop))
            )
            return out

        replica.ready = counted  # type: ignore[method-assign]
    victim, names = isolate_and_fail_over(cluster)
    assert len(names) > 2 * chunk
    fenced = [stops for node, _, _, stops in per_ready if node == victim and stops]
    assert fenced and fenced[0] == len(names), f"the fence stopped {fenced} of {len(names)}"
    cluster.heal()
    for _ in range(3000):
        if all(cluster.where(n) == [victim] for n in names):
            break
        cluster.all_handoffs_done(lambda name: f"state of {name}".encode())
        cluster.tick()
    assert all(cluster.where(n) == [victim] for n in names), "every name moved back"
    assert max(starts for _, starts, _, _ in per_ready) <= chunk, per_ready
    assert max(handoffs for _, _, handoffs, _ in per_ready) <= chunk, per_ready
    assert sum(handoffs for _, _, handoffs, _ in per_ready) >= len(names)
    assert cluster.violations == []


def test_handoffs_finished_together_are_released_in_one_entry() -> None:
    cluster, victim, names = healed_with_handoffs_asked()
    leader = cluster.leader()
    mark = len(cluster.applied[leader.id])
    cluster.all_handoffs_done(lambda name: f"s/{name}".encode())
    cluster.tick_until(lambda: all(cluster.where(n) == [victim] for n in names))
    released = [a.command for a in cluster.applied[leader.id][mark:]]
    batches = [c for c in released if isinstance(c, Releases)]
    assert batches and max(len(b.items) for b in batches) > 1
    assert sorted(i.name for b in batches for i in b.items) == names
    assert not [c for c in released if isinstance(c, Released)], "no entry per name"
    for act in cluster.starts(victim)[-len(names) :]:
        assert (act.activation.reason, act.activation.state) == (
            StartReason.HANDOFF,
            f"s/{act.activation.name}".encode(),
        )
    assert cluster.violations == []


def test_a_handoff_without_state_restarts_at_the_owner() -> None:
    cluster, victim, names = healed_with_handoffs_asked()
    for node, reqs in list(cluster.handoffs.items()):
        for name in list(reqs):
            cluster.handoff_done(node, name, None)
    cluster.tick_until(lambda: all(cluster.where(n) == [victim] for n in names))
    starts = cluster.starts(victim)[-len(names) :]
    assert {(s.activation.reason, s.activation.state) for s in starts} == {
        (StartReason.RESTART, None)
    }
    assert cluster.violations == []


def test_an_ignored_handoff_keeps_the_worker_where_it_is() -> None:
    cluster, victim, names = healed_with_handoffs_asked()
    for node, reqs in list(cluster.handoffs.items()):
        for name, request in list(reqs.items()):
            cluster.nodes[node].handoff_ignored(name, request.token)
            del reqs[name]
    mark = len(cluster.events)
    cluster.tick(100)
    assert cluster.events[mark:] == [], "not asked again within the same view"
    for name in names:
        assert cluster.where(name) and victim not in cluster.where(name)
    # A new view (here: the victim's roles change) asks again.
    cluster.propose(MemberUp(node=victim, incarnation=2, address=f"{victim}:7000", roles=("x",)))
    cluster.tick(2)
    assert sorted(n for reqs in cluster.handoffs.values() for n in reqs) == names
    assert cluster.violations == []


def test_unregister_stops_the_activation() -> None:
    cluster = formed()
    register_all(cluster)
    holder = cluster.where("w3")[0]
    token = cluster.running[holder]["w3"]
    cluster.propose(Unregister(name="w3"))
    cluster.tick(2)
    assert cluster.where("w3") == []
    assert cluster.stops(holder)[-1] == Stop(name="w3", token=token, reason=StopReason.UNREGISTERED)
    assert all("w3" not in r.state.names for r in cluster.nodes.values())


def test_a_bad_entry_from_a_peer_is_refused_by_every_replica_without_crashing() -> None:
    cluster = formed()
    register_all(cluster)
    leader = cluster.leader()
    garbage = b'{"group":"g","kind":"join","name":["w1"]}'
    with pytest.raises(InvalidCommand):
        decode(garbage)
    sender = follower(cluster)
    cluster.queue.append(Forward(src=sender, dst=leader.id, data=garbage))
    cluster.pump()
    cluster.tick(3)
    for node in cluster.ids:
        refused = [a for a in cluster.applied[node] if a.command is None]
        assert len(refused) == 1
        assert refused[0].result.code is Code.INVALID_ARGUMENT
        assert "name must be a string" in refused[0].result.message
    register_all(cluster, ["after"])
    assert len(cluster.where("after")) == 1, "the cluster goes on"


def test_a_lagging_member_never_uses_a_fresh_lease_with_a_stale_view() -> None:
    """Regression: when a cut-off member comes back, the leader's ack can reach it before
    the log does. The lease must not count until the member has applied the log to the
    ack's index, or it would act on a view in which its names had not moved yet."""
    cluster = formed()
    lagging = follower(cluster)
    register_all(cluster)
    cluster.isolate(lagging)
    cluster.tick_until(
        lambda: all(cluster.where(n) and cluster.where(n) != [lagging] for n in NAMES)
    )

    def no_log_to_lagging(msg: PeerMessage) -> bool:
        # Raft heartbeats still tell it who leads; the log itself is held back.
        return not (
            isinstance(msg, Message)
            and msg.dst == lagging
            and msg.type in (MessageType.APPEND, MessageType.SNAPSHOT)
        )

    cluster.filters.append(no_log_to_lagging)
    cluster.heal()
    acks: list[MemberAck] = []

    def record_acks(msg: PeerMessage) -> bool:
        if isinstance(msg, MemberAck) and msg.dst == lagging:
            acks.append(msg)
        return True

    cluster.filters.append(record_acks)
    cluster.tick_until(lambda: len(acks) >= 3)
    replica = cluster.nodes[lagging]
    assert replica.raft.applied_index < acks[-1].index, "its log is still behind"
    assert not replica.agent.has_lease(), "acks wait until the log catches up"
    cluster.filters.clear()
    cluster.tick_until(lambda: replica.agent.has_lease())
    cluster.tick(10)
    assert cluster.violations == []
    assert all(len(cluster.where(n)) == 1 for n in NAMES)


def test_a_name_unregistered_before_its_holder_started_it_is_freed() -> None:
    """Register and unregister applied in one Ready: the holder never starts the name, so
    no Stop confirms it — the holder must confirm anyway, or the name stays half
    unregistered (and unregistrable) for as long as that holder lives. Found by
    ``registry sim cluster --seed 102``."""
    cluster = formed()
    leader = cluster.leader()
    leader.propose(Register(specs=(NameSpec(name="job", kind="k"),)))
    leader.propose(Unregister(name="job"))
    cluster.pump()
    cluster.tick_until(lambda: all("job" not in r.state.names for r in cluster.nodes.values()))
    assert all(s.activation.name != "job" for s in cluster.starts()), "it never ran"
    again = cluster.propose(Register(specs=(NameSpec(name="job", kind="k"),)))
    cluster.tick(2)
    [result] = [a.result for a in cluster.applied[leader.id] if a.index == again]
    assert result.ok
    assert len(cluster.where("job")) == 1
    assert cluster.violations == []


def test_reregistering_a_name_elsewhere_never_overlaps_the_old_activation() -> None:
    cluster = formed()
    leader = cluster.leader()
    other = follower(cluster)
    cluster.propose(Register(specs=(NameSpec(name="job", kind="k", priority=((other,),)),)))
    cluster.tick(2)
    assert cluster.where("job") == [other]
    unregister = leader.propose(Unregister(name="job"))
    again = leader.propose(
        Register(specs=(NameSpec(name="job", kind="k", priority=((leader.id,),)),))
    )
    cluster.pump()
    results = {a.index: a.result for a in cluster.applied[leader.id]}
    assert results[unregister].ok
    assert results[again].code is Code.FAILED_PRECONDITION, "the old holder has not stopped"
    assert "still stopping" in results[again].message
    cluster.tick_until(lambda: "job" not in leader.state.names)
    stops = [s for s in cluster.stops(other) if s.name == "job"]
    assert [s.reason for s in stops] == [StopReason.UNREGISTERED]
    cluster.propose(Register(specs=(NameSpec(name="job", kind="k", priority=((leader.id,),)),)))
    cluster.tick(2)
    assert cluster.where("job") == [leader.id]
    assert cluster.violations == []


def test_a_new_leader_grants_no_lease_before_an_entry_of_its_term_commits() -> None:
    """Until its own first entry commits, a predecessor's entry this leader lacks (say a
    MemberDown) could still commit later, so its acknowledgements would promise too much."""
    cluster = formed()
    old = cluster.leader()
    new = follower(cluster)
    acks: list[MemberAck] = []
    blocked = {"append_resp": True}

    def no_append_responses_to_new(msg: PeerMessage) -> bool:
        if isinstance(msg, MemberAck) and msg.src == new:
            acks.append(msg)
        return not (
            blocked["append_resp"]
            and isinstance(msg, Message)
            and msg.type is MessageType.APPEND_RESP
            and msg.dst == new
        )

    cluster.filters.append(no_append_responses_to_new)
    old.raft.transfer_leadership(new)
    cluster.pump()
    assert cluster.leaders() == [new]
    raft = cluster.nodes[new].raft
    for _ in range(8):
        cluster.tick()
        assert raft.lease_remaining() > 0, "heartbeats still reach a quorum"
        assert raft.term_at(raft.commit_index) != raft.term
    assert acks == []
    blocked["append_resp"] = False
    cluster.tick(5)
    assert raft.term_at(raft.commit_index) == raft.term
    assert {a.dst for a in acks} == {old.id, next(n for n in cluster.ids if n not in (new, old.id))}
    first_of_term = min(i for i in range(1, raft.last_index + 1) if raft.term_at(i) == raft.term)
    # Rule 3: an ack asks its member to apply the last MemberDown of it (none here: 0),
    # or the whole log while the tail holds an entry the leader cannot vouch for (its
    # term's first entry, committed but not applied yet).
    assert all(a.index == 0 or a.index >= first_of_term for a in acks)
    assert cluster.violations == []


@pytest.mark.parametrize("how", ["proposed", "forwarded_json"])
def test_a_member_behind_on_other_entries_keeps_its_lease(how: str) -> None:
    """Rule 3 asks a member to have applied the last MemberDown of itself, not the
    leader's whole log: under a steady stream of writes a member whose log lags (here it
    gets no appends at all) kept none of its acks, and lost its lease and its names
    (issue 13's 100k join and heal: "acknowledgements waited for this node to apply the
    log", on 2 loaded cores)."""
    cluster = formed()
    register_all(cluster)
    behind = follower(cluster)
    replica = cluster.nodes[behind]
    incarnation = replica.incarnation
    applied = replica.raft.applied_index
    cluster.filters.append(
        lambda msg: (
            not (
                isinstance(msg, Message)
                and msg.dst == behind
                and msg.type in (MessageType.APPEND, MessageType.SNAPSHOT)
            )
        )
    )
    lease = cluster.membership.lease_tick
    other = next(n for n in cluster.ids if n not in (behind, cluster.leader().id))
    for i in range(3 * lease):
        command = Register(specs=(NameSpec(name=f"more-{i}", kind="k"),))
        if how == "proposed":
            cluster.propose(command)
        else:  # a follower that has not switched to binary entries forwards JSON
            data = encode(command, binary=False)
            cluster.leader().step(Forward(src=other, dst=cluster.leader().id, data=data))
        cluster.tick()
        assert replica.agent.has_lease(), f"lost its lease after {i + 1} ticks"
    leader = cluster.leader()
    assert replica.raft.applied_index == applied
    assert leader.raft.last_index - applied >= 3 * lease, "every write went on without it"
    assert replica.incarnation == incarnation, "it never fenced"
    assert cluster.violations == []


def test_a_draining_member_hands_every_name_away_with_state() -> None:
    """Graceful stop: the member asks to be drained; its names move by handoff (state
    kept, reason HANDOFF), nothing new lands on it, and then it reports drained()."""
    cluster = formed()
    register_all(cluster)
    leaving = follower(cluster)
    mine = sorted(n for n in NAMES if cluster.where(n) == [leaving])
    assert mine, "pick a seed where the follower owns something"
    cluster.nodes[leaving].drain()
    cluster.tick_until(lambda: set(cluster.handoffs[leaving]) == set(mine))
    for name in mine:
        cluster.handoff_done(leaving, name, f"state-of-{name}".encode())
    cluster.tick_until(
        lambda: all(cluster.where(n) and cluster.where(n) != [leaving] for n in mine)
    )
    for name in mine:
        [start] = [s for s in cluster.starts() if s.activation.name == name][-1:]
        assert start.activation.reason is StartReason.HANDOFF
        assert start.activation.state == f"state-of-{name}".encode()
    assert cluster.nodes[leaving].drained()
    record = cluster.leader().state.members[leaving]
    assert record.up and record.draining, "still up (its lease counts), but eligible for nothing"
    cluster.propose(Register(specs=(NameSpec(name="late", kind="k"),)))
    cluster.tick(3)
    assert cluster.where("late") and cluster.where("late") != [leaving]
    assert cluster.violations == []


def test_a_stalled_leader_does_not_declare_members_down_on_deaf_ticks() -> None:
    """Ticks a stalled leader catches up are deaf: its MemberDown timer must not count
    them as silence (the members' heartbeats were waiting unread). The same number of
    ordinary ticks without member heartbeats does declare the members down."""
    cluster = formed()
    leader = cluster.leader()
    down_after = cluster.timing.membership().down_after_tick
    cluster.filters.append(lambda msg: not isinstance(msg, MemberHeartbeat))
    for _ in range(3 * down_after):
        leader.tick(deaf=True)
        cluster.pump()
    assert leader.raft.role is Role.LEADER
    assert all(m.up for m in leader.state.members.values()), "deaf ticks declared a member down"
    for _ in range(3 * down_after):
        leader.tick()
        cluster.pump()
    assert leader.raft.role is Role.LEADER
    down = sorted(n for n, m in leader.state.members.items() if not m.up)
    assert down and leader.id not in down, down


def test_an_unregister_is_confirmed_only_once_the_worker_has_really_stopped() -> None:
    """G1 whatever the worker does: a worker that ignores stop runs until its host is
    killed, so the name must stay unregistrable (and start nowhere) until the runtime
    reports ``stopped``, not from the moment the Stop is emitted."""
    cluster = formed()
    leader = cluster.leader()
    other = follower(cluster)
    cluster.propose(Register(specs=(NameSpec(name="job", kind="k", priority=((other,),)),)))
    cluster.tick(2)
    assert cluster.where("job") == [other]
    cluster.hold_stops = True
    cluster.propose(Unregister(name="job"))
    cluster.tick(20)
    assert [s.reason for s in cluster.held[other]] == [StopReason.UNREGISTERED]
    again = cluster.propose(
        Register(specs=(NameSpec(name="job", kind="k", priority=((leader.id,),)),))
    )
    cluster.tick(2)
    [result] = [a.result for a in cluster.applied[leader.id] if a.index == again]
    assert result.code is Code.FAILED_PRECONDITION and result.reason == "UNREGISTERING"
    assert cluster.where("job") == [other], "still running on the old holder only"
    cluster.confirm_stops(other)
    cluster.tick_until(lambda: "job" not in leader.state.names)
    cluster.propose(Register(specs=(NameSpec(name="job", kind="k", priority=((leader.id,),)),)))
    cluster.tick(2)
    assert cluster.where("job") == [leader.id]
    assert cluster.violations == []


def test_a_fenced_member_stays_silent_until_its_workers_have_stopped() -> None:
    """Its lease lapses (acknowledgements lost) while the leader still counts it up: it
    fences, and its workers ignore the stop. A heartbeat in its new incarnation would
    bring that incarnation up and fail its names over at once, beside the old workers;
    so it sends none until every stop is reported, then rejoins."""
    cluster = formed()
    register_all(cluster)
    victim = follower(cluster)
    names = sorted(cluster.running[victim])
    assert names
    cluster.hold_stops = True

    def no_acks(msg: PeerMessage) -> bool:
        return not (isinstance(msg, MemberAck) and msg.dst == victim)

    cluster.filters.append(no_acks)
    cluster.tick_until(lambda: cluster.incarnations[victim] == 2)
    cluster.filters.remove(no_acks)
    assert sorted(s.name for s in cluster.held[victim]) == names
    heartbeats: list[MemberHeartbeat] = []

    def record(msg: PeerMessage) -> bool:
        if isinstance(msg, MemberHeartbeat) and msg.src == victim:
            heartbeats.append(msg)
        return True

    cluster.filters.append(record)
    # Fewer ticks than fence_grace: by then the real control process has killed them.
    cluster.tick(cluster.timing.membership().fence_grace_tick - 1)
    assert heartbeats == [], "silent while its old workers may run"
    leader = cluster.leader()
    assert leader.state.members[victim].incarnation == 1
    assert all(cluster.where(n) == [victim] for n in names), "nothing moved yet"
    cluster.confirm_stops(victim)
    cluster.tick_until(
        lambda: (
            leader.state.members[victim].incarnation == 2 and all(cluster.where(n) for n in names)
        )
    )
    assert heartbeats and all(h.incarnation == 2 for h in heartbeats)
    assert cluster.violations == []


def test_a_leaderless_term_between_does_not_cost_the_lost_leader_s_names_a_down_after() -> None:
    """Membership rule 5 with raft rule 9: the leader is cut off and the next term ends
    with no leader (a split vote: two followers timing out in the same tick). The
    winner of the term after still knows the lost leader led the last term that had a
    leader lease, so it declares it down ``previous_leader_down_tick`` after its win,
    not ``down_after_tick``. The partition suite saw that failover take 3.4 s."""
    cluster = formed()
    register_all(cluster)
    lost = cluster.leaders()[0]
    term = cluster.nodes[lost].raft.term
    cfg = cluster.timing.membership()
    assert cfg.previous_leader_down_tick is not None
    assert cfg.previous_leader_down_tick < cfg.down_after_tick
    cluster.isolate(lost)
    others = [n for n in cluster.ids if n != lost]

    def votes_lost(m: PeerMessage) -> bool:
        return not (isinstance(m, Message) and m.type is MessageType.VOTE)

    cluster.filters.append(votes_lost)
    cluster.tick_until(lambda: any(cluster.nodes[n].raft.term > term for n in others))
    cluster.filters.remove(votes_lost)
    cluster.tick_until(lambda: bool(set(cluster.leaders()) & set(others)))
    winner = cluster.nodes[cluster.leaders()[0]]
    assert winner.raft.term >= term + 2, "a term without a leader came between"
    assert winner.raft.prior_leader_term == term

    def down() -> bool:
        return any(
            isinstance(a.command, MemberDown) and a.command.node == lost
            for a in cluster.applied[winner.id]
        )

    waited = cluster.tick_until(down)
    assert waited < cfg.down_after_tick, f"down {waited} ticks after the win"
    assert waited >= cfg.previous_leader_down_tick - 1, "never sooner than the rule allows"
    assert cluster.violations == []


def test_heartbeats_that_arrive_in_a_raft_lease_gap_are_answered_when_it_ends() -> None:
    """Membership rule 2's exception: the leader's Raft lease lapses for a while (its
    heartbeat acknowledgements come back too late: they name old heartbeats), so it may
    grant no member lease. The member heartbeats of that gap are answered once the lease
    is back, so a follower whose own lease had ticks left does not fence. Before, they
    went unanswered, and a follower whose next heartbeat came after its lease ended
    fenced every worker: at 100k names on 2 cores, every member at once. (The leader's
    own lease is capped by its Raft lease, rule 5: a gap this long fences it anyway.)"""
    cluster = formed()
    register_all(cluster)
    leader = cluster.leader()
    followers = [n for n in cluster.ids if n != leader.id]
    sent_at: dict[str, int] = {}

    def stale_acks(m: PeerMessage) -> PeerMessage:
        if isinstance(m, MemberHeartbeat) and m.src in followers:
            sent_at[m.src] = cluster.nodes[m.src].agent.ticks
        if isinstance(m, Message) and m.type is MessageType.HEARTBEAT_RESP and m.context > 5:
            return replace(m, context=m.context - 5)  # an answer to an old heartbeat
        return m

    cluster.rewrites.append(stale_acks)
    cluster.tick_until(lambda: leader.raft.lease_remaining() == 0)
    assert leader.raft.role is Role.LEADER, "still leading: check-quorum is satisfied"
    # The gap lasts until a follower's lease is nearly out, just after it sent a
    # heartbeat: its next one comes only after its lease has ended.
    heartbeat = cluster.timing.membership().heartbeat_tick

    def nearly_out(node: str) -> bool:
        agent = cluster.nodes[node].agent
        return 0 < agent.lease_remaining() <= heartbeat and sent_at.get(node) == agent.ticks

    cluster.tick_until(lambda: any(nearly_out(n) for n in followers))
    victim = next(n for n in followers if nearly_out(n))
    assert cluster.running[victim], "it runs workers: a fence would stop them"
    cluster.rewrites.remove(stale_acks)
    cluster.tick(2 * heartbeat)
    assert [f for f in cluster.fences if f[1] in followers] == [], "no follower fenced"
    assert cluster.nodes[victim].agent.has_lease() and cluster.incarnations[victim] == 1
    assert cluster.violations == []


def test_a_leader_reelected_in_the_next_term_keeps_what_it_heard() -> None:
    """Membership rule 5: a leader that steps down and wins the very next term counts a
    silent member's time from when it last heard it, not from the re-election (nobody
    acknowledged anything in between). Before, the partition suite saw a failover take
    3.5 s: the leader stepped down as the member was cut off, won again, and waited a
    whole ``down_after`` from there."""
    cluster = formed()
    register_all(cluster)
    leader = cluster.leaders()[0]
    other, silent = (n for n in cluster.ids if n != leader)
    term = cluster.nodes[leader].raft.term
    down_after = cluster.timing.membership().down_after_tick
    cluster.isolate(silent)
    cut_at = 0
    # The leader loses the other follower too, so it steps down...
    cluster.cut |= {(leader, other), (other, leader)}
    steps = cluster.tick_until(lambda: cluster.nodes[leader].raft.role is not Role.LEADER)
    # ...and only it may campaign once they hear each other again: the next term is its.
    cluster.cut -= {(leader, other), (other, leader)}
    campaigns = (MessageType.PRE_VOTE, MessageType.VOTE)
    cluster.filters.append(
        lambda m: not (isinstance(m, Message) and m.src == other and m.type in campaigns)
    )
    steps += cluster.tick_until(lambda: leader in cluster.leaders())
    assert cluster.nodes[leader].raft.term == term + 1, "re-elected in the next term"
    reelected_at = steps

    def down() -> bool:
        return any(
            isinstance(a.command, MemberDown) and a.command.node == silent
            for a in cluster.applied[leader]
        )

    steps += cluster.tick_until(down)
    assert steps - cut_at <= down_after + 10, (
        f"down {steps - cut_at} ticks after the cut; down_after is {down_after}"
    )
    assert steps < reelected_at + down_after, "not a whole down_after from the re-election"
    assert cluster.violations == []


def _down_applied(cluster: Cluster, at: str, node: str) -> bool:
    return any(
        isinstance(a.command, MemberDown) and a.command.node == node for a in cluster.applied[at]
    )


def test_a_leader_that_removes_itself_hands_its_failure_detector_to_its_successor() -> None:
    """Membership rule 5's handover, with raft rule 6: a follower is cut off, then the
    leader removes itself. It asks a caught-up voter to campaign at once, and the
    ``TIMEOUT_NOW`` carries how long it had not heard from each member, so the successor
    declares the cut-off follower down ``down_after`` after the cut, not after its own
    win. The partition suite saw that failover take 3.45 s (a membership change during a
    split). Safety is checked at every Start (``cluster.violations``): the cut-off
    member runs its names until its lease ends, so a MemberDown that came too early
    would start one of them twice."""
    cluster = formed(ids=("n1", "n2", "n3", "n4"))
    register_all(cluster)
    leader = cluster.leader()
    term = leader.raft.term
    cluster.tick_until(lambda: sum(len(r) for r in cluster.running.values()) == len(NAMES))
    cut_off = next(n for n in cluster.ids if n != leader.id and cluster.running[n])
    moving = set(cluster.running[cut_off])
    down_after = cluster.timing.membership().down_after_tick
    cluster.isolate(cut_off)
    cluster.tick(10)
    steps = 10
    leader.control(ProposeConfChange(change=ConfChange(type=ConfChangeType.REMOVE, node=leader.id)))
    steps += cluster.tick_until(lambda: bool(set(cluster.leaders()) - {leader.id}))
    successor = cluster.leader()
    assert successor.raft.term == term + 1, "won at once: no election timeout, no split"
    assert successor.view().handover_from == leader.id
    won_at = steps
    steps += cluster.tick_until(lambda: _down_applied(cluster, successor.id, cut_off))
    assert steps <= down_after + 10, f"down {steps} ticks after the cut; down_after {down_after}"
    assert steps < won_at + down_after, "not a whole down_after from the successor's win"
    others = set(cluster.ids) - {cut_off}
    cluster.tick_until(lambda: all(set(cluster.where(n)) & others for n in moving))
    assert cluster.violations == []


def test_a_leader_handed_back_leadership_keeps_what_it_heard_before() -> None:
    """Membership rule 5's handover, when it comes back: a follower is cut off, the
    leader loses its quorum for a moment and steps down, the other follower wins the next
    term, and hands leadership back (say it is being removed). What the old leader heard
    before still bounds every lease granted before the handing-over term (it is the one
    that led it), so it declares the cut-off follower down ``down_after`` after the cut,
    not after the successor's win. The partition suite saw 3.2 and 3.4 s for that
    (a membership change during a split, the leader stepping down as the split began)."""
    cluster = formed()
    register_all(cluster)
    cluster.tick_until(lambda: sum(len(r) for r in cluster.running.values()) == len(NAMES))
    leader = cluster.leaders()[0]
    silent = next(n for n in cluster.ids if n != leader and cluster.running[n])
    other = next(n for n in cluster.ids if n not in (leader, silent))
    moving = set(cluster.running[silent])
    term = cluster.nodes[leader].raft.term
    down_after = cluster.timing.membership().down_after_tick
    cluster.isolate(silent)
    cluster.cut |= {(leader, other), (other, leader)}
    steps = cluster.tick_until(lambda: cluster.nodes[leader].raft.role is not Role.LEADER)
    cluster.cut -= {(leader, other), (other, leader)}
    campaigns = (MessageType.PRE_VOTE, MessageType.VOTE)
    no_campaign = lambda m: not (isinstance(m, Message) and m.src == leader and m.type in campaigns)  # noqa: E731
    cluster.filters.append(no_campaign)
    steps += cluster.tick_until(lambda: other in cluster.leaders())
    assert cluster.nodes[other].raft.term == term + 1
    cluster.filters.remove(no_campaign)
    cluster.nodes[other].control(TransferLeadership(target=leader))
    steps += cluster.tick_until(lambda: leader in cluster.leaders())
    assert cluster.nodes[leader].raft.term == term + 2, "handed back in the next term"
    assert cluster.nodes[leader].view().handover_from == other
    assert cluster.nodes[other].view().handover_from == "", "it won an election"
    won_at = steps
    steps += cluster.tick_until(lambda: _down_applied(cluster, leader, silent))
    assert steps <= down_after + 10, f"down {steps} ticks after the cut; down_after {down_after}"
    assert steps < won_at + down_after, "not a whole down_after from the win"
    others = set(cluster.ids) - {silent}
    cluster.tick_until(lambda: all(set(cluster.where(n)) & others for n in moving))
    assert cluster.violations == []


def test_a_handover_from_anyone_but_the_leader_is_ignored() -> None:
    """A forged handover: a member that is not the leader sends a ``TIMEOUT_NOW`` whose
    counts say every member has been silent for ``down_after``. Raft ignores it (not from
    the leader), and so must the failure detector: if the receiver then wins the next
    term, it counts from its own win. Kept, it would declare every live member down at
    once and start their names a second time."""
    cluster = formed()
    register_all(cluster)
    cluster.tick_until(lambda: sum(len(r) for r in cluster.running.values()) == len(NAMES))
    leader = cluster.leaders()[0]
    receiver, forger = (n for n in cluster.ids if n != leader)
    term = cluster.nodes[leader].raft.term
    down_after = cluster.timing.membership().down_after_tick
    silent = tuple(MemberSilence(node=n, ticks=down_after) for n in cluster.ids)
    forged = Message(
        type=MessageType.TIMEOUT_NOW,
        src=forger,
        dst=receiver,
        term=term,
        handover=Handover(members=silent),
    )
    cluster.nodes[receiver].step(forged)
    assert cluster.nodes[receiver].raft.term == term, "Raft ignored it"
    # The leader goes away; the receiver wins the next term by election.
    cluster.isolate(leader)
    campaigns = (MessageType.PRE_VOTE, MessageType.VOTE)
    cluster.filters.append(
        lambda m: not (isinstance(m, Message) and m.src == forger and m.type in campaigns)
    )
    won = cluster.tick_until(lambda: receiver in cluster.leaders())
    assert cluster.nodes[receiver].raft.term == term + 1
    assert cluster.nodes[receiver].view().handover_from == ""
    cluster.tick(down_after // 2)
    assert not _down_applied(cluster, receiver, forger), f"won after {won} ticks"
    assert cluster.violations == []
