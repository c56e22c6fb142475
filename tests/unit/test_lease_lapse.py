"""A fence says why the member lease ran out (``LeaseLapse``, ``registry.node.lease_log``):
acknowledgements held back by a lagging log, none at all, or a stalled loop."""

from __future__ import annotations

from registry.core.membership import LeaseLapse, MemberAck, MemberAgent, MemberHeartbeat
from registry.core.timing import PRESETS
from registry.node.lease_log import describe_lapse
from tests.unit.test_membership import CFG

LAN = PRESETS["lan"]


def ack(hb: MemberHeartbeat | None, index: int = 0) -> MemberAck:
    assert hb is not None
    return MemberAck(src=hb.dst, dst=hb.src, seq=hb.seq, incarnation=hb.incarnation, index=index)


def run_out(member: MemberAgent, *, beat: bool) -> LeaseLapse:
    """Tick until the lease lapses (heartbeating to L if ``beat``); the fence's report."""
    for _ in range(CFG.lease_tick * 2):
        member.tick()
        if beat:
            member.heartbeat("L")
        if member.check_fence():
            assert member.lapse is not None
            return member.lapse
    raise AssertionError("the lease never lapsed")


def leased(applied: int = 0) -> MemberAgent:
    member = MemberAgent(CFG, "m", 1)
    member.applied_to(applied)
    member.on_ack(ack(member.heartbeat("L")))
    assert member.has_lease()
    return member


def test_acknowledgements_held_for_the_log_are_counted_with_the_index_they_wait_for() -> None:
    member = leased(applied=4)
    member.tick()
    member.tick()
    member.on_ack(ack(member.heartbeat("L"), index=9))
    member.tick()
    member.tick()
    member.on_ack(ack(member.heartbeat("L"), index=7))
    member.applied_to(6)
    lapse = run_out(member, beat=False)
    assert (lapse.acks_held, lapse.held_for_index, lapse.applied) == (2, 9, 6)
    assert lapse.leader == "L"
    assert "applied too slowly" in describe_lapse(lapse, LAN, 2)


def test_an_acknowledgement_that_counted_clears_what_was_held_before() -> None:
    member = leased(applied=4)
    member.tick()
    member.tick()
    member.on_ack(ack(member.heartbeat("L"), index=9))
    member.applied_to(9)  # the held one counts now
    lapse = run_out(member, beat=True)
    assert lapse.acks_held == 0
    assert lapse.last_ack == lapse.granted_by_heartbeat_sent, "acked in the tick it was sent"
    text = describe_lapse(lapse, LAN, 2)
    assert "went unacknowledged" in text and "leader L" in text


def test_a_member_that_stopped_heartbeating_is_told_its_loop_stalled() -> None:
    lapse = run_out(leased(), beat=False)
    assert lapse.last_heartbeat == lapse.granted_by_heartbeat_sent == CFG.lease_tick
    assert "loop was stalled" in describe_lapse(lapse, LAN, 2)


def test_a_fence_resets_the_report_for_the_next_incarnation() -> None:
    member = leased(applied=4)
    member.on_ack(ack(member.heartbeat("L"), index=9))
    run_out(member, beat=False)
    member.applied_to(9)
    member.on_ack(ack(member.heartbeat("L")))  # the old incarnation's: ignored
    hb = member.heartbeat("L")
    assert hb is not None and hb.incarnation == 2
    member.on_ack(ack(hb))
    lapse = run_out(member, beat=False)
    assert lapse.acks_held == 0 and member.incarnation == 3


def test_a_member_without_a_leader_is_told_so_not_that_its_loop_stalled() -> None:
    member = leased()
    for _ in range(CFG.lease_tick * 2):
        member.tick()
        member.heartbeat("")  # Raft knows no leader
        if member.check_fence():
            break
    assert member.lapse is not None and member.lapse.leader == ""
    assert "no leader was known" in describe_lapse(member.lapse, LAN, 2)


def test_a_leader_s_own_acknowledgements_count_as_acknowledgements() -> None:
    """A leader acknowledges its own heartbeats (``on_self_ack``); its fence must not
    say it never had one."""
    member = MemberAgent(CFG, "m", 1)
    member.on_self_ack(ack(member.heartbeat("m")), cap=CFG.lease_tick)
    assert member.has_lease()
    member.tick()
    member.on_self_ack(ack(member.heartbeat("m"), index=5), cap=CFG.lease_tick)
    lapse = run_out(member, beat=False)
    assert lapse.last_ack >= 0, "its own acknowledgements were heard"
    assert (lapse.acks_held, lapse.held_for_index) == (1, 5)
