"""The committed side of runtime membership: ``MemberAdmit``/``MemberRetire`` encode,
apply deterministically, survive a snapshot, and a retired id stays retired."""

from __future__ import annotations

from registry.core.commands import MemberAdmit, MemberRetire, MemberUp, decode, encode
from registry.core.state import Code, RegistryState

ADMIT = MemberAdmit(node="n4", address="10.0.0.4:7400", peer_address="10.0.0.4:8400")


def test_commands_round_trip() -> None:
    for command in (ADMIT, MemberRetire(node="n4")):
        assert decode(encode(command)) == command


def test_a_retired_member_places_nothing_and_is_never_admitted_again() -> None:
    state = RegistryState()
    assert state.apply(1, ADMIT).ok
    assert state.apply(2, MemberUp(node="n4", incarnation=1, address="10.0.0.4:7400")).ok
    assert state.apply(3, MemberRetire(node="n4")).ok
    assert state.members["n4"].draining and "n4" not in state.admitted
    # Its own heartbeats say "not draining": it stays eligible for nothing.
    assert state.apply(4, MemberUp(node="n4", incarnation=2, address="10.0.0.4:7400")).ok
    assert state.members["n4"].draining
    refused = state.apply(5, ADMIT)
    assert refused.code is Code.FAILED_PRECONDITION and "retired" in refused.message
    assert "n4" not in state.admitted


def test_snapshot_keeps_admitted_and_retired() -> None:
    state = RegistryState()
    state.apply(1, ADMIT)
    state.apply(2, MemberRetire(node="n3"))
    restored = RegistryState.restore(state.snapshot())
    assert restored.admitted == {"n4": ("10.0.0.4:7400", "10.0.0.4:8400")}
    assert restored.retired == {"n3"}
    assert b"admitted" not in RegistryState().snapshot()  # old snapshots stay byte-equal


def test_a_fresh_learner_hears_a_leader_it_was_not_configured_with() -> None:
    from registry.core.messages import Message, MessageType
    from registry.node.peer_guard import PeerView, check

    def view(last_index: int) -> PeerView:
        return PeerView(
            node="n5",
            term=0 if last_index == 0 else 3,
            leader="" if last_index == 0 else "n2",
            commit=0,
            last_index=last_index,
            term_at=lambda i: 0,
            raft_members=frozenset() if last_index == 0 else frozenset({"n2", "n5"}),
            configured=frozenset({"n1", "n2", "n3"}),
            members={},
            holder_of=lambda name: None,
        )

    append = Message(type=MessageType.APPEND, src="n4", dst="n5", term=3)
    assert check(append, sender="n4", view=view(0)) is None  # it has no log: listen
    # It has a log and follows n2: a stranger's append is refused. (Without a leader it
    # would listen: it may have missed n4's addition; tests/security/test_peer_guard.py.)
    assert check(append, sender="n4", view=view(9)) == "unknown_sender"
