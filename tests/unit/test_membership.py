"""Member leases (MemberAgent) and the leader's failure detector (LeaderMonitor)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from registry.core.commands import MemberDown, MemberUp
from registry.core.membership import LeaderMonitor, MemberAck, MemberAgent, MemberHeartbeat
from registry.core.state import RegistryState
from registry.core.timing import MembershipConfig

CFG = MembershipConfig(
    heartbeat_tick=2,
    lease_tick=10,
    down_after_tick=20,
    fence_grace_tick=3,
    handoff_deadline_tick=5,
    retry_tick=4,
)


def agent(incarnation: int = 1, **kw: tuple[str, ...]) -> MemberAgent:
    return MemberAgent(CFG, "m", incarnation, address="m:1", **kw)


def ack_for(hb: MemberHeartbeat, **changes: object) -> MemberAck:
    ack = MemberAck(src=hb.dst, dst=hb.src, seq=hb.seq, incarnation=hb.incarnation)
    return replace(ack, **changes)  # type: ignore[arg-type]


def advance(member: MemberAgent, ticks: int) -> None:
    for _ in range(ticks):
        member.tick()


# -- MemberAgent -----------------------------------------------------------------------


def test_no_heartbeat_without_a_leader() -> None:
    member = agent()
    for _ in range(10):
        member.tick()
        assert member.heartbeat("") is None
    assert member.heartbeat("L") is not None, "due at once when a leader appears"


def test_first_heartbeat_goes_out_at_once_and_carries_the_member() -> None:
    member = agent(roles=("web",), kinds=("video",))
    hb = member.heartbeat("L")
    assert hb == MemberHeartbeat(
        src="m", dst="L", seq=1, incarnation=1, address="m:1", roles=("web",), kinds=("video",)
    )
    assert member.heartbeat("L") is None, "not twice in one tick"


def test_heartbeat_every_heartbeat_tick() -> None:
    member = agent()
    sent: list[int] = []
    for _ in range(21):
        hb = member.heartbeat("L")
        if hb is not None:
            sent.append(member.ticks)
            assert hb.seq == len(sent)
        member.tick()
    assert sent == list(range(0, 21, CFG.heartbeat_tick))


def test_a_new_lease_is_reported_at_once() -> None:
    """The leader brings a member up (and gives it names) only once a heartbeat reports a
    lease: the one after the first ack goes out at once, not a heartbeat_tick later."""
    member = agent()
    first = member.heartbeat("L")
    assert first is not None and not first.has_lease
    member.tick()
    member.on_ack(ack_for(first))
    news = member.heartbeat("L")
    assert news is not None and news.has_lease, "reported one tick after the ack"
    assert member.heartbeat("L") is None, "then the usual rhythm"
    advance(member, CFG.heartbeat_tick)
    steady = member.heartbeat("L")
    assert steady is not None and steady.has_lease


def test_heartbeat_follows_the_current_leader() -> None:
    member = agent()
    assert member.heartbeat("L1") is not None
    advance(member, CFG.heartbeat_tick)
    hb = member.heartbeat("L2")
    assert hb is not None and hb.dst == "L2"


def test_no_lease_before_an_ack() -> None:
    member = agent()
    assert not member.has_lease()
    assert member.lease_remaining() == 0
    member.heartbeat("L")
    advance(member, 3)
    assert not member.has_lease()


def test_an_ack_extends_the_lease_from_the_send_tick_not_the_ack_time() -> None:
    member = agent()
    advance(member, 5)
    hb = member.heartbeat("L")  # sent at tick 5
    assert hb is not None
    advance(member, 4)  # the ack takes 4 ticks to come back
    member.on_ack(ack_for(hb))
    assert member.has_lease()
    assert member.lease_remaining() == 5 + CFG.lease_tick - 9
    advance(member, 5 + CFG.lease_tick - 9 - 1)
    assert member.has_lease()
    member.tick()
    assert member.ticks == 5 + CFG.lease_tick
    assert not member.has_lease()
    assert member.lease_remaining() == 0


def test_an_ack_for_an_older_heartbeat_never_shortens_the_lease() -> None:
    member = agent()
    first = member.heartbeat("L")
    advance(member, CFG.heartbeat_tick)
    second = member.heartbeat("L")
    assert first is not None and second is not None
    member.on_ack(ack_for(second))
    remaining = member.lease_remaining()
    member.on_ack(ack_for(first))
    assert member.lease_remaining() == remaining == CFG.lease_tick


@pytest.mark.parametrize(
    "change",
    [{"incarnation": 2}, {"incarnation": 0}, {"dst": "other"}, {"seq": 99}],
    ids=["newer-incarnation", "older-incarnation", "other-member", "unknown-seq"],
)
def test_acks_that_do_not_match_are_ignored(change: dict[str, object]) -> None:
    member = agent()
    hb = member.heartbeat("L")
    assert hb is not None
    member.on_ack(ack_for(hb, **change))
    assert not member.has_lease()


def test_a_very_late_ack_gives_no_lease() -> None:
    member = agent()
    hb = member.heartbeat("L")
    assert hb is not None
    advance(member, CFG.lease_tick + 3)
    member.on_ack(ack_for(hb))
    assert not member.has_lease()


def test_an_ack_counts_only_once_the_log_is_applied_to_its_index() -> None:
    member = agent()
    member.applied_to(4)
    hb = member.heartbeat("L")
    assert hb is not None
    member.on_ack(ack_for(hb, index=7))
    assert not member.has_lease(), "the member's view is older than the leader's"
    member.applied_to(6)
    assert not member.has_lease()
    advance(member, 3)
    member.applied_to(7)
    assert member.has_lease()
    assert member.lease_remaining() == CFG.lease_tick - 3, "still counted from the send"


def test_an_ack_at_or_below_the_applied_index_counts_at_once() -> None:
    member = agent()
    member.applied_to(7)
    member.applied_to(3)  # never goes back
    hb = member.heartbeat("L")
    assert hb is not None
    member.on_ack(ack_for(hb, index=7))
    assert member.has_lease()


def test_a_pending_ack_that_expired_before_the_apply_gives_nothing() -> None:
    member = agent()
    hb = member.heartbeat("L")
    assert hb is not None
    member.on_ack(ack_for(hb, index=5))
    advance(member, CFG.lease_tick)
    member.applied_to(5)
    assert not member.has_lease()


def test_check_fence_is_true_once_when_a_held_lease_runs_out() -> None:
    member = agent(incarnation=4)
    assert member.check_fence() is False, "never held a lease: nothing to fence"
    hb = member.heartbeat("L")
    assert hb is not None
    member.on_ack(ack_for(hb))
    assert member.check_fence() is False, "lease holds"
    assert member.incarnation == 4
    advance(member, CFG.lease_tick)
    assert not member.has_lease()
    assert member.check_fence() is True
    assert member.incarnation == 5
    assert member.check_fence() is False, "only once"
    assert member.incarnation == 5


def test_after_a_fence_old_acks_are_ignored_and_a_new_lease_fences_again() -> None:
    member = agent()
    hb = member.heartbeat("L")
    assert hb is not None
    member.on_ack(ack_for(hb))
    member.check_fence()
    advance(member, CFG.lease_tick)
    late = member.heartbeat("L")
    assert late is not None and late.incarnation == 1
    assert member.check_fence() is True
    member.on_ack(ack_for(late))  # acknowledges the old incarnation
    assert not member.has_lease()
    advance(member, CFG.heartbeat_tick)
    fresh = member.heartbeat("L")
    assert fresh is not None and fresh.incarnation == 2
    member.on_ack(ack_for(fresh))
    assert member.has_lease()
    assert member.check_fence() is False
    advance(member, CFG.lease_tick)
    assert member.check_fence() is True
    assert member.incarnation == 3


def test_a_lease_that_is_renewed_in_time_never_fences() -> None:
    member = agent()
    for _ in range(100):
        hb = member.heartbeat("L")
        if hb is not None:
            member.on_ack(ack_for(hb))
        assert member.check_fence() is False
        assert member.has_lease()
        member.tick()
    assert member.incarnation == 1


# -- LeaderMonitor ---------------------------------------------------------------------


def state_with(*members: tuple[str, int]) -> RegistryState:
    state = RegistryState()
    for index, (node, inc) in enumerate(members, start=1):
        assert state.apply(index, MemberUp(node=node, incarnation=inc, address=f"{node}:1")).ok
    return state


def hb(node: str, incarnation: int = 1, **kw: object) -> MemberHeartbeat:
    beat = MemberHeartbeat(
        src=node, dst="L", seq=1, incarnation=incarnation, address=f"{node}:1", has_lease=True
    )
    return replace(beat, **kw)  # type: ignore[arg-type]


def test_no_member_up_until_the_member_reports_a_lease() -> None:
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    assert monitor.on_heartbeat(hb("new", has_lease=False), 1, lease_holds=True) is not None
    assert monitor.changes(RegistryState(), 2) == [], "it could not run what it is given"
    monitor.on_heartbeat(hb("new"), 3, lease_holds=True)
    assert [type(c) for c in monitor.changes(RegistryState(), 4)] == [MemberUp]


def test_acks_stop_for_an_up_member_that_never_gets_them() -> None:
    """Rule 7: one-way loss of acknowledgements ends in MemberDown, not stuck names."""
    state = state_with(("a", 1))
    monitor = LeaderMonitor(replace(CFG, retry_tick=1000))
    monitor.became_leader(0)
    down_after = CFG.down_after_tick
    acked = [
        now
        for now in range(0, 4 * down_after)
        if monitor.on_heartbeat(hb("a", has_lease=False), now, lease_holds=True, member_up=True)
    ]
    assert acked == list(range(down_after)), "acks stop after down_after without a lease"
    assert monitor.changes(state, 2 * down_after - 2) == []
    assert monitor.changes(state, 2 * down_after - 1) == [MemberDown(node="a", incarnation=1)]
    # Once it is down, acknowledgements resume: if they get through, it can come back.
    assert monitor.on_heartbeat(hb("a", has_lease=False), 200, lease_holds=True) is not None


def test_a_member_that_regains_its_lease_is_acked_again() -> None:
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    for now in range(CFG.down_after_tick + 1):
        monitor.on_heartbeat(hb("a", has_lease=False), now, lease_holds=True, member_up=True)
    now = CFG.down_after_tick + 2
    assert monitor.on_heartbeat(hb("a"), now, lease_holds=True, member_up=True) is not None
    assert monitor.on_heartbeat(hb("a", has_lease=False), now + 1, lease_holds=True, member_up=True)


def test_no_ack_and_no_record_while_the_leader_lease_does_not_hold() -> None:
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    assert monitor.on_heartbeat(hb("new"), 1, lease_holds=False) is None
    assert monitor.changes(RegistryState(), 2) == [], "an unacked heartbeat proposes nothing"


def test_ack_mirrors_the_heartbeat_and_carries_the_leader_index() -> None:
    monitor = LeaderMonitor(CFG)
    beat = replace(hb("m", 3), seq=17)
    ack = monitor.on_heartbeat(beat, 5, lease_holds=True, last_index=42)
    assert ack == MemberAck(src="L", dst="m", seq=17, incarnation=3, index=42)
    assert monitor.last_heard("m") == 5


def test_member_down_only_after_down_after_of_silence() -> None:
    state = state_with(("a", 1), ("b", 1))
    monitor = LeaderMonitor(replace(CFG, retry_tick=1000))
    monitor.became_leader(100)
    monitor.on_heartbeat(hb("a"), 105, lease_holds=True)
    monitor.on_heartbeat(hb("b"), 110, lease_holds=True)
    assert monitor.changes(state, 124) == []
    assert monitor.changes(state, 125) == [MemberDown(node="a", incarnation=1)]
    assert monitor.changes(state, 129) == []
    assert monitor.changes(state, 130) == [MemberDown(node="b", incarnation=1)]


def test_silence_counts_from_became_leader_at_the_earliest() -> None:
    state = state_with(("a", 1), ("b", 1))
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    monitor.on_heartbeat(hb("a"), 1, lease_holds=True)
    # A later term: what this node heard before says nothing about what its
    # predecessor acknowledged since, so it starts counting afresh.
    monitor.became_leader(50)
    assert monitor.last_heard("a") == 50
    assert monitor.last_heard("never") == 50
    assert monitor.changes(state, 69) == []
    assert set(monitor.changes(state, 70)) == {
        MemberDown(node="a", incarnation=1),
        MemberDown(node="b", incarnation=1),
    }


def test_member_down_is_not_proposed_for_members_already_down() -> None:
    state = state_with(("a", 1), ("b", 1))
    assert state.apply(3, MemberDown(node="a", incarnation=1)).ok
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    assert monitor.changes(state, 100) == [MemberDown(node="b", incarnation=1)]


def test_heard_members_stay_up() -> None:
    state = state_with(("a", 1))
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    for now in range(0, 200, 5):
        monitor.on_heartbeat(hb("a"), now, lease_holds=True)
        assert monitor.changes(state, now) == []


@pytest.mark.parametrize(
    ("beat", "why"),
    [
        (hb("new"), "unknown member"),
        (hb("a", 2), "new incarnation"),
        (hb("a", roles=("web",)), "changed roles"),
        (hb("a", kinds=("video",)), "changed kinds"),
        (hb("a", address="a:2"), "changed address"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_member_up_when_the_member_is_new_or_changed(beat: MemberHeartbeat, why: str) -> None:
    state = state_with(("a", 1))
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    monitor.on_heartbeat(beat, 1, lease_holds=True)
    expected = MemberUp(
        node=beat.src,
        incarnation=beat.incarnation,
        address=beat.address,
        roles=beat.roles,
        kinds=beat.kinds,
    )
    assert monitor.changes(state, 2) == [expected], why


def test_member_up_for_a_member_that_was_declared_down() -> None:
    state = state_with(("a", 1))
    assert state.apply(2, MemberDown(node="a", incarnation=1)).ok
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    monitor.on_heartbeat(hb("a", 2), 1, lease_holds=True)
    assert monitor.changes(state, 2) == [MemberUp(node="a", incarnation=2, address="a:1")]


def test_no_member_up_for_a_current_member_or_an_older_incarnation() -> None:
    state = state_with(("a", 3))
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    monitor.on_heartbeat(hb("a", 3), 1, lease_holds=True)
    assert monitor.changes(state, 2) == []
    monitor.on_heartbeat(hb("a", 2), 3, lease_holds=True)  # a delayed heartbeat from before
    assert monitor.changes(state, 4) == []


def test_no_member_up_from_a_heartbeat_older_than_down_after() -> None:
    state = RegistryState()
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    monitor.on_heartbeat(hb("gone"), 1, lease_holds=True)
    assert monitor.changes(state, 1 + CFG.down_after_tick) == []


def test_proposals_are_not_repeated_within_retry_tick() -> None:
    state = state_with(("a", 1))
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    monitor.on_heartbeat(hb("new"), 0, lease_holds=True)
    down = MemberDown(node="a", incarnation=1)
    up = MemberUp(node="new", incarnation=1, address="new:1")
    t = CFG.down_after_tick
    monitor.on_heartbeat(hb("new"), t - 1, lease_holds=True)
    assert set(monitor.changes(state, t)) == {down, up}
    for now in range(t + 1, t + CFG.retry_tick):
        monitor.on_heartbeat(hb("new"), now, lease_holds=True)
        assert monitor.changes(state, now) == [], now
    assert set(monitor.changes(state, t + CFG.retry_tick)) == {down, up}, "still due: retried"


def test_became_leader_forgets_earlier_proposals() -> None:
    state = state_with(("a", 1))
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    down = MemberDown(node="a", incarnation=1)
    assert monitor.changes(state, CFG.down_after_tick) == [down]
    monitor.became_leader(CFG.down_after_tick + 1)
    assert monitor.changes(state, 2 * CFG.down_after_tick + 1) == [down]


def test_a_lapsed_lease_with_nothing_running_keeps_the_incarnation() -> None:
    """Found by the partition suite (the seed story): a brief lease from late acks after a
    heal lapsed, the member fenced with nothing running, and the new incarnation failed
    over the name just handed to it, dropping its state."""
    member = agent()
    member.tick()
    beat = member.heartbeat("L")
    assert beat is not None
    member.on_ack(ack_for(beat))
    assert member.check_fence(running=False) is False
    while member.has_lease():
        member.tick()
    assert member.check_fence(running=False) is False
    assert member.incarnation == 1, "no activation ran: its tokens are still fresh"


def test_a_new_leader_gets_a_heartbeat_at_once() -> None:
    member = agent()
    assert member.heartbeat("L1") is not None
    member.tick()
    assert member.heartbeat("L1") is None, "not due yet"
    assert member.heartbeat("L2") is not None, "a new leader is asked straight away"
    assert member.heartbeat("L2") is None


# -- rule 5: the previous leader -----------------------------------------------------------


def test_a_leader_leases_itself_only_up_to_the_cap() -> None:
    member = agent()
    beat = member.heartbeat("m")
    assert beat is not None
    member.on_self_ack(ack_for(beat), cap=member.ticks + 7)
    assert member.lease_remaining() == 7, "capped below sent + lease_tick (10)"
    advance(member, CFG.heartbeat_tick)
    beat2 = member.heartbeat("m")
    assert beat2 is not None
    member.on_self_ack(ack_for(beat2), cap=member.ticks + 100)
    assert member.lease_remaining() == CFG.lease_tick, "never past sent + lease_tick"


def test_capping_shortens_the_self_granted_lease_but_not_one_another_leader_granted() -> None:
    member = agent()
    beat = member.heartbeat("m")
    assert beat is not None
    member.on_self_ack(ack_for(beat), cap=member.ticks + CFG.lease_tick)
    member.cap_self_lease(member.ticks + 4)  # say, a leadership transfer revoked the lease
    assert member.lease_remaining() == 4
    advance(member, CFG.heartbeat_tick)
    other = member.heartbeat("L")  # a follower again: another leader acks
    assert other is not None
    member.on_ack(ack_for(other))
    member.cap_self_lease(member.ticks)
    assert member.lease_remaining() == CFG.lease_tick


def test_a_cap_also_bounds_a_self_granted_lease_still_waiting_for_the_log() -> None:
    member = agent()
    beat = member.heartbeat("m")
    assert beat is not None
    member.on_self_ack(ack_for(beat, index=5), cap=member.ticks + CFG.lease_tick)
    assert not member.has_lease(), "waits for index 5 to be applied"
    member.cap_self_lease(member.ticks + 5)
    member.applied_to(5)
    assert member.lease_remaining() == 5


PREVIOUS = replace(CFG, retry_tick=1000, previous_leader_down_tick=8)


def test_the_previous_leader_is_declared_down_sooner_than_the_others() -> None:
    state = state_with(("x", 1), ("y", 1))
    monitor = LeaderMonitor(PREVIOUS)
    monitor.became_leader(100, previous=("x", 60))
    assert monitor.changes(state, 107) == []
    assert monitor.changes(state, 108) == [MemberDown(node="x", incarnation=1)]
    assert monitor.changes(state, 119) == []
    assert monitor.changes(state, 120) == [MemberDown(node="y", incarnation=1)]


def test_a_previous_leader_that_led_only_briefly_gets_down_after_from_its_start() -> None:
    """A lease another leader granted it began before it was elected: that one is only
    bounded by down_after from when we first heard from it as leader."""
    state = state_with(("x", 1))
    monitor = LeaderMonitor(PREVIOUS)
    monitor.became_leader(100, previous=("x", 95))
    assert monitor.changes(state, 114) == []
    assert monitor.changes(state, 115) == [MemberDown(node="x", incarnation=1)]


def test_without_a_known_previous_leader_everyone_waits_down_after() -> None:
    state = state_with(("x", 1))
    monitor = LeaderMonitor(PREVIOUS)
    monitor.became_leader(100)
    assert monitor.changes(state, 119) == []
    assert monitor.changes(state, 120) == [MemberDown(node="x", incarnation=1)]


def test_lan_timing_lets_the_previous_leader_go_sooner_within_the_drift_rule() -> None:
    from registry.core.timing import preset

    lan = preset("lan")
    cfg = lan.membership()
    assert cfg.previous_leader_down_tick is not None
    assert cfg.previous_leader_down_tick < cfg.down_after_tick
    extra_s = cfg.leader_extra_tick * lan.tick
    d = lan.max_drift
    needed_s = (extra_s + lan.fence_grace) * (1 + d) / (1 - d) + lan.margin
    assert cfg.previous_leader_down_tick * lan.tick >= needed_s


def test_a_heartbeat_from_before_the_member_down_does_not_bring_that_incarnation_back() -> None:
    """Rule 6: after a heal, heartbeats queued during the cut arrive first."""
    state = state_with(("a", 3))
    assert state.apply(10, MemberDown(node="a", incarnation=3)).ok
    assert state.members["a"].down_index == 10
    monitor = LeaderMonitor(replace(CFG, retry_tick=1000))
    monitor.became_leader(0)
    monitor.on_heartbeat(hb("a", incarnation=3, applied=9), 1, lease_holds=True)
    assert monitor.changes(state, 2) == [], "sent before it knew it was down"
    monitor.on_heartbeat(hb("a", incarnation=3, applied=10), 3, lease_holds=True)
    assert [type(c) for c in monitor.changes(state, 4)] == [MemberUp]


def test_a_new_incarnation_comes_up_whatever_it_has_applied() -> None:
    state = state_with(("a", 3))
    assert state.apply(10, MemberDown(node="a", incarnation=3)).ok
    monitor = LeaderMonitor(CFG)
    monitor.became_leader(0)
    monitor.on_heartbeat(hb("a", incarnation=4, applied=0), 1, lease_holds=True)
    [up] = monitor.changes(state, 2)
    assert isinstance(up, MemberUp) and up.incarnation == 4


def test_down_index_survives_a_snapshot() -> None:
    state = state_with(("a", 3), ("b", 1))
    assert state.apply(10, MemberDown(node="a", incarnation=3)).ok
    back = RegistryState.restore(state.snapshot())
    assert back.members["a"].down_index == 10 and back.members["b"].down_index == 0
