"""The peer-message guard (registry/node/peer_guard.py), as pure functions: each forged
message of issue 14 is refused with its reason, honest traffic passes, the codec never
raises, and (hypothesis) random envelopes never raise out and invalid ones never pass."""

from __future__ import annotations

import dataclasses
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.core.commands import (
    InvalidCommand,
    MemberDown,
    MemberUp,
    NameSpec,
    Register,
    Released,
    Releases,
    decode,
    encode,
)
from registry.core.membership import MemberAck, MemberHeartbeat
from registry.core.messages import (
    ConfState,
    Entry,
    EntryType,
    Handover,
    MemberSilence,
    Message,
    MessageType,
    SnapshotMeta,
)
from registry.core.replica import Forward, PeerMessage
from registry.core.state import RegistryState
from registry.node.peer_guard import (
    MAX_TERM_JUMP,
    REASONS,
    PeerView,
    RefusalLog,
    SnapshotGuard,
    check,
)
from registry.v1 import peer_pb2, raft_pb2
from registry.wire.codec import decode_peer, encode_peer

TERM = 7
COMMIT = 20
LOG = {i: (5 if i <= 10 else TERM) for i in range(1, 26)}
"""This replica's log: terms by index (1..25), committed up to 20."""
HELD = {"room-a": "n2", "room-b": "n3"}


def view(*, leader: str = "n1", last_index: int = 25, term: int = TERM) -> PeerView:
    return PeerView(
        node="n2",
        term=term,
        leader=leader,
        commit=COMMIT if last_index else 0,
        last_index=last_index,
        term_at=lambda i: 0 if i == 0 else (LOG.get(i) if last_index else None),
        raft_members=frozenset({"n1", "n2", "n3"}),
        configured=frozenset({"n1", "n2", "n3"}),
        members={"n1": object(), "n2": object(), "n3": object(), "w4": object()},
        holder_of=HELD.get,
    )


def heartbeat(**kw: object) -> Message:
    base = dict(type=MessageType.HEARTBEAT, src="n1", dst="n2", term=TERM, commit=COMMIT)
    return Message(**{**base, **kw})  # type: ignore[arg-type]


def append(index: int, terms: list[int], **kw: object) -> Message:
    entries = tuple(Entry(term=t, index=index + 1 + i, data=b"") for i, t in enumerate(terms))
    base = dict(
        type=MessageType.APPEND,
        src="n1",
        dst="n2",
        term=TERM,
        index=index,
        log_term=LOG.get(index, 0),
        entries=entries,
        commit=COMMIT,
    )
    return Message(**{**base, **kw})  # type: ignore[arg-type]


def member_hb(src: str, **kw: object) -> MemberHeartbeat:
    base = dict(src=src, dst="n2", seq=1, incarnation=1, address="127.0.0.1:6666")
    return MemberHeartbeat(**{**base, **kw})  # type: ignore[arg-type]


HONEST: list[tuple[PeerMessage, str]] = [
    (heartbeat(), "n1"),
    (append(25, [TERM, TERM]), "n1"),
    (append(20, [TERM] * 5), "n1"),  # overlaps what we hold, same terms
    (append(22, [TERM], log_term=TERM), "n1"),
    (Message(type=MessageType.VOTE, src="n3", dst="n2", term=TERM + 1, index=25), "n3"),
    (Message(type=MessageType.APPEND_RESP, src="n3", dst="n2", term=TERM, index=25), "n3"),
    (member_hb("n3", has_lease=True), "n3"),
    (member_hb("w4", has_lease=True), "w4"),  # a member of the committed membership
    (MemberAck(src="n1", dst="n2", seq=3, incarnation=1, index=25), "n1"),
    (Forward(src="n2", dst="n2", data=b""), "n2"),  # (dst self: refused below, not here)
]


def test_a_deposed_leaders_append_is_left_to_raft() -> None:
    """An append of an older term that disagrees with our commits is what a deposed
    leader's in-flight traffic looks like: Raft refuses it by term and answers with
    ours (how the old leader learns); the guard refusing it instead kept it in the dark."""
    stale = append(15, [TERM - 1], src="n3", term=TERM - 1, log_term=TERM - 1)
    assert check(stale, sender="n3", view=view()) is None
    # The same append in the current term is a forgery.
    current = append(15, [TERM - 1], src="n3", log_term=TERM - 1)
    assert check(current, sender="n3", view=view(leader="n3")) == "committed_conflict"


def test_honest_traffic_passes() -> None:
    for msg, sender in HONEST[:-1]:
        assert check(msg, sender=sender, view=view()) is None, msg
    release = Forward(src="n3", dst="n2", data=encode(Released(name="room-b", token=4, state=b"s")))
    assert check(release, sender="n3", view=view()) is None
    many = Releases(items=(Released(name="room-b", token=4),))
    assert check(dataclasses.replace(release, data=encode(many)), sender="n3", view=view()) is None
    # A fresh node (no log) learns whatever term the cluster is at.
    far = heartbeat(term=TERM + 10 * MAX_TERM_JUMP)
    assert check(far, sender="n1", view=view(leader="", last_index=0, term=0)) is None


def test_a_node_without_a_leader_hears_a_member_it_does_not_know_yet() -> None:
    """A node cut off while m4 was added and promoted knows neither m4 nor that m4 may
    lead now. Refusing m4's heartbeats, appends and votes stranded it for good (the
    partition suite's member-change schedule stalled an election for 30 s). Without a
    leader it lets them through; the term-jump and identity rules still hold."""
    lagging = view(leader="")
    vote = Message(
        type=MessageType.VOTE, src="m4", dst="n2", term=TERM + 1, index=26, log_term=TERM
    )
    pre_vote = dataclasses.replace(vote, type=MessageType.PRE_VOTE)
    new_leader = heartbeat(src="m4", term=TERM + 1)
    catch_up = append(25, [TERM + 1], src="m4", term=TERM + 1, log_term=TERM)
    for msg in (vote, pre_vote, new_leader, catch_up):
        assert check(msg, sender="m4", view=lagging) is None, msg
        # Following a leader, the same traffic from outside the configuration is refused.
        assert check(msg, sender="m4", view=view()) == "unknown_sender", msg
    jump = heartbeat(src="m4", term=TERM + MAX_TERM_JUMP + 1)
    assert check(jump, sender="m4", view=lagging) == "term_jump"
    assert check(new_leader, sender="n3", view=lagging) == "identity_mismatch"
    # Member traffic still needs a member the committed state knows.
    assert check(member_hb("m4", has_lease=True), sender="m4", view=lagging) == "unknown_member"


def test_a_node_that_follows_a_member_it_does_not_know_yet_hears_it_out() -> None:
    """The same node, once the first heartbeat got through, follows m4 — and refused
    m4's appends from then on, so it never learned the change that adds m4, and m4 never
    had the quorum it needed while another voter was cut off: elections every second
    and failovers of 3.4–5.5 s in the member-change schedule. Its own leader is heard;
    anyone else outside the configuration is still refused."""
    following_m4 = view(leader="m4", term=TERM + 1)
    catch_up = append(25, [TERM + 1], src="m4", term=TERM + 1, log_term=TERM)
    beat = heartbeat(src="m4", term=TERM + 1)
    for msg in (catch_up, beat):
        assert check(msg, sender="m4", view=following_m4) is None, msg
        stranger = dataclasses.replace(msg, src="m5")
        assert check(stranger, sender="m5", view=following_m4) == "unknown_sender", msg
    assert check(beat, sender=None, view=following_m4) == "unknown_sender", "unauthenticated"


def test_a_release_re_sent_after_it_was_applied_does_not_sink_its_batch() -> None:
    """A follower re-sends releases until its own state shows them applied; the leader
    may have applied one already (the name moved on, with a new token). That item is
    stale, not forged: the state machine refuses it by token. Refusing it refused the
    whole batch, and the rebalance's other releases waited for the next retry. An item
    naming the *current* activation of someone else's name is still a forgery."""
    tokens = {"room-a": 7, "room-b": 4}
    lagging = dataclasses.replace(view(), token_of=tokens.get)
    mine = Released(name="room-b", token=4)
    moved_on = Released(name="room-a", token=5)  # room-a is n2's now, token 7
    batch = Forward(src="n3", dst="n2", data=encode(Releases(items=(mine, moved_on))))
    assert check(batch, sender="n3", view=lagging) is None
    current = Releases(items=(mine, Released(name="room-a", token=7)))
    forged = Forward(src="n3", dst="n2", data=encode(current))
    assert check(forged, sender="n3", view=lagging) == "forward_not_allowed"
    # Without tokens to compare (an unregistered name, or a view that has none), refused.
    assert check(batch, sender="n3", view=view()) == "forward_not_allowed"


FORGED: list[tuple[str, PeerMessage, str, PeerView]] = [
    # Issue 14, one by one: what an attacker sent, and why it is now refused.
    ("huge term heartbeat", heartbeat(src="n3", term=2**64 - 1), "n3", view()),
    ("huge term, 2**63", heartbeat(src="n3", term=2**63), "n3", view()),
    (
        "handover with a huge count",
        heartbeat(
            type=MessageType.TIMEOUT_NOW,
            handover=Handover(members=(MemberSilence(node="n2", ticks=2**63),)),
        ),
        "n1",
        view(),
    ),
    ("term jump", heartbeat(src="n3", term=TERM + MAX_TERM_JUMP + 1), "n3", view()),
    ("term+1 heartbeat claiming n1", heartbeat(term=TERM + 1), "n3", view()),
    ("heartbeat from a cert outside the cluster", heartbeat(src="evil"), "evil", view()),
    ("append in the current term from a non-leader", append(25, [TERM], src="n3"), "n3", view()),
    ("append rewriting a committed entry", append(9, [TERM, TERM]), "n1", view()),
    ("append with a forged previous committed term", append(15, [TERM], log_term=3), "n1", view()),
    (
        "non-contiguous append",
        append(25, [TERM], entries=(Entry(term=TERM, index=30),)),
        "n1",
        view(),
    ),
    ("append with decreasing terms", append(25, [TERM, 6]), "n1", view()),
    ("append with an entry past its term", append(25, [TERM + 1]), "n1", view()),
    (
        "bad conf change entry",
        append(
            25, [], entries=(Entry(term=TERM, index=26, type=EntryType.CONF_CHANGE, data=b"x"),)
        ),
        "n1",
        view(),
    ),
    ("rogue member heartbeat with a lease", member_hb("rogue", has_lease=True), "rogue", view()),
    ("n1's heartbeat from n2's certificate", member_hb("n1", incarnation=10**6), "n3", view()),
    (
        "Forward carrying MemberDown",
        Forward(src="n3", dst="n2", data=encode(MemberDown(node="n1", incarnation=1))),
        "n3",
        view(),
    ),
    (
        "Forward releasing someone else's name",
        Forward(src="n3", dst="n2", data=encode(Released(name="room-a", token=2))),
        "n3",
        view(),
    ),
    (
        "Forward registering a name",
        Forward(src="n3", dst="n2", data=encode(Register(specs=()))),
        "n3",
        view(),
    ),
    ("Forward of garbage", Forward(src="n3", dst="n2", data=b"\xff{"), "n3", view()),
    ("misaddressed", heartbeat(dst="n3"), "n1", view()),
    ("from ourselves", member_hb("n2"), "n2", view()),
]
EXPECTED = {
    "huge term heartbeat": "huge_value",
    "huge term, 2**63": "huge_value",
    "handover with a huge count": "huge_value",
    "term jump": "term_jump",
    "term+1 heartbeat claiming n1": "identity_mismatch",
    "heartbeat from a cert outside the cluster": "unknown_sender",
    "append in the current term from a non-leader": "second_leader",
    "append rewriting a committed entry": "committed_conflict",
    "append with a forged previous committed term": "committed_conflict",
    "non-contiguous append": "non_contiguous",
    "append with decreasing terms": "non_contiguous",
    "append with an entry past its term": "non_contiguous",
    "bad conf change entry": "bad_entry",
    "rogue member heartbeat with a lease": "unknown_member",
    "n1's heartbeat from n2's certificate": "identity_mismatch",
    "Forward carrying MemberDown": "forward_not_allowed",
    "Forward releasing someone else's name": "forward_not_allowed",
    "Forward registering a name": "forward_not_allowed",
    "Forward of garbage": "forward_not_allowed",
    "misaddressed": "wrong_dst",
    "from ourselves": "unknown_member",
}


def test_every_forged_message_is_refused_with_its_reason() -> None:
    got = {what: check(msg, sender=sender, view=v) for what, msg, sender, v in FORGED}
    assert got == EXPECTED
    assert set(EXPECTED.values()) <= set(REASONS)


# -- snapshots ---------------------------------------------------------------------------

META = SnapshotMeta(index=30, term=TERM, conf=ConfState(voters=frozenset({"n1", "n2", "n3"})))


def chunk(offset: int, data: bytes, done: bool, meta: SnapshotMeta = META) -> Message:
    return Message(
        type=MessageType.SNAPSHOT,
        src="n1",
        dst="n2",
        term=TERM,
        snapshot=meta,
        chunk=data,
        offset=offset,
        done=done,
    )


def test_snapshot_transfers_are_capped_and_must_decode() -> None:
    registry = RegistryState()
    registry.apply(1, MemberUp(node="n1", incarnation=1, address="127.0.0.1:7400"))
    registry.apply(2, Register(specs=(NameSpec(name="room-a", kind="counter"),)))
    state = registry.snapshot()
    assert b"room-a" in state
    guard = SnapshotGuard(cap=1000)
    half = len(state) // 2
    assert guard.check(chunk(0, state[:half], False)) is None
    assert guard.check(chunk(0, state[:half], False)) is None  # a restart rewinds
    assert guard.check(chunk(half, state[half:], True)) is None
    assert guard.check(chunk(0, b"x" * 600, False)) is None
    assert guard.check(chunk(600, b"x" * 600, False)) == "snapshot_too_big"
    assert guard.check(chunk(0, b"not json at all", True)) == "snapshot_undecodable"
    assert guard.check(chunk(0, b"{", False)) is None
    assert guard.check(chunk(1, b'"members": 5}', True)) == "snapshot_undecodable"


def test_refusals_are_logged_at_most_once_per_second_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[str] = []
    now = [100.0]
    refusals = RefusalLog(counted.append, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="registry.peers"):
        for _ in range(50):
            refusals.refuse("term_jump", "x")
        refusals.refuse("unknown_member", "y")
        now[0] += 1.5
        refusals.refuse("term_jump", "z")
    assert len(counted) == 52
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "and 49 more" in lines[2]
    assert all(r.exc_info is None for r in caplog.records)


# -- the codec never raises --------------------------------------------------------------


def test_codec_never_raises_on_values_that_do_not_fit() -> None:
    assert encode_peer(heartbeat(term=2**64)) is None
    assert encode_peer(heartbeat(term=2**64 - 1)) is not None
    bad_type = peer_pb2.PeerEnvelope(raft=raft_pb2.Message(type=99, src="n1", dst="n2"))  # type: ignore[arg-type]
    assert decode_peer(bad_type) is None
    unspecified = peer_pb2.PeerEnvelope(raft=raft_pb2.Message(src="n1", dst="n2"))
    assert decode_peer(unspecified) is None
    bad_entry = peer_pb2.PeerEnvelope(
        raft=raft_pb2.Message(
            type=raft_pb2.MESSAGE_TYPE_APPEND,
            entries=[raft_pb2.Entry(index=1, type=7)],  # type: ignore[arg-type]
        )
    )
    assert decode_peer(bad_entry) is None
    assert decode_peer(peer_pb2.PeerEnvelope()) is None


def test_a_handover_survives_the_wire_and_an_old_node_s_message_has_none() -> None:
    silences = (MemberSilence(node="n2", ticks=3, acked=True), MemberSilence(node="n3", ticks=0))
    sent = heartbeat(type=MessageType.TIMEOUT_NOW, handover=Handover(prior="n1", members=silences))
    envelope = encode_peer(sent)
    assert envelope is not None and decode_peer(envelope) == sent
    # What a node without the field sends: the receiver just counts from its win.
    old = raft_pb2.Message(type=raft_pb2.MESSAGE_TYPE_TIMEOUT_NOW, src="n1", dst="n2", term=4)
    decoded = decode_peer(peer_pb2.PeerEnvelope(raft=old))
    assert isinstance(decoded, Message) and decoded.handover is None


# -- property: random envelopes -----------------------------------------------------------

IDS = st.sampled_from(["n1", "n2", "n3", "w4", "evil", ""])
DST = st.one_of(st.just("n2"), IDS)
"""Mostly addressed to the node under test, so that the other rules are reached."""
U64 = st.one_of(
    st.integers(0, 40),
    st.sampled_from([TERM + MAX_TERM_JUMP, TERM + MAX_TERM_JUMP + 1, 2**63 - 1, 2**63]),
    st.integers(0, 2**64 - 1),
)
ENTRY = st.builds(
    raft_pb2.Entry,
    term=U64,
    index=U64,
    type=st.integers(0, 3),
    data=st.one_of(st.just(b""), st.binary(max_size=20), st.just(b"0:n4")),
)
RAFT = st.builds(
    raft_pb2.Message,
    type=st.integers(0, 15),
    src=IDS,
    dst=DST,
    term=U64,
    log_term=U64,
    index=U64,
    entries=st.lists(ENTRY, max_size=4),
    commit=U64,
    context=U64,
    chunk=st.binary(max_size=30),
    offset=U64,
    done=st.booleans(),
)


@st.composite
def near_append(draw: st.DrawFn) -> raft_pb2.Message:
    """Appends close to this replica's log, so that contiguity, leadership and committed
    terms are what decides (uniform random fields would almost never get that far)."""
    index = draw(st.integers(0, 27))
    count = draw(st.integers(0, 4))
    skip = draw(st.sampled_from([0, 0, 0, 1, -1]))
    terms = draw(st.lists(st.sampled_from([4, 5, 6, TERM]), min_size=count, max_size=count))
    entries = [
        raft_pb2.Entry(term=t, index=index + 1 + i + (skip if i == count - 1 else 0))
        for i, t in enumerate(sorted(terms))
    ]
    return raft_pb2.Message(
        type=raft_pb2.MESSAGE_TYPE_APPEND,
        src=draw(st.sampled_from(["n1", "n3"])),
        dst="n2",
        term=draw(st.sampled_from([TERM, TERM, TERM + 1])),
        index=index,
        log_term=draw(st.sampled_from([LOG.get(index, 0), 5, TERM])),
        entries=entries,
        commit=draw(st.integers(0, 30)),
    )


HB = st.builds(
    peer_pb2.MemberHeartbeat,
    src=IDS,
    dst=DST,
    seq=U64,
    incarnation=U64,
    address=st.text(max_size=20),
    has_lease=st.booleans(),
    applied=U64,
)
FORWARD_DATA = st.one_of(
    st.binary(max_size=40),
    st.sampled_from(
        [
            encode(MemberDown(node="n1", incarnation=1)),
            encode(Released(name="room-a", token=1)),
            encode(Released(name="room-b", token=1)),
            encode(Releases(items=(Released(name="room-b", token=1),))),
        ]
    ),
)
ENVELOPE = st.one_of(
    st.builds(lambda m: peer_pb2.PeerEnvelope(raft=m), RAFT),
    st.builds(lambda m: peer_pb2.PeerEnvelope(raft=m), near_append()),
    st.builds(lambda h: peer_pb2.PeerEnvelope(heartbeat=h), HB),
    st.builds(
        lambda s, d, data: peer_pb2.PeerEnvelope(forward=peer_pb2.Forward(src=s, dst=d, data=data)),
        IDS,
        DST,
        FORWARD_DATA,
    ),
    st.builds(
        lambda s, d, n: peer_pb2.PeerEnvelope(ack=peer_pb2.MemberAck(src=s, dst=d, seq=n, index=n)),
        IDS,
        DST,
        U64,
    ),
    st.just(peer_pb2.PeerEnvelope()),
)


def invalid(msg: PeerMessage, sender: str, v: PeerView) -> bool:
    """An independent statement of what must never pass (the rules, re-derived)."""
    if msg.dst != v.node or msg.src != sender or msg.src == v.node:
        return True
    ints = [getattr(msg, f.name) for f in dataclasses.fields(msg)]
    if isinstance(msg, Message):
        ints += [x for e in msg.entries for x in (e.term, e.index)]
    if any(isinstance(x, int) and not isinstance(x, bool) and x >= 2**63 for x in ints):
        return True
    if isinstance(msg, Message):
        if msg.src not in {"n1", "n2", "n3"} or msg.term - v.term > MAX_TERM_JUMP:
            return True
        leading = msg.type in (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT)
        if leading and msg.term == v.term and msg.src != v.leader:
            return True
        if msg.type is MessageType.APPEND:
            expected = list(range(msg.index + 1, msg.index + 1 + len(msg.entries)))
            if [e.index for e in msg.entries] != expected:
                return True
            for e in ((msg.index, msg.log_term), *((e.index, e.term) for e in msg.entries)):
                if e[0] <= v.commit and LOG.get(e[0], 0) != e[1]:
                    return True
        return False
    if msg.src not in {"n1", "n2", "n3", "w4"}:
        return True
    if isinstance(msg, Forward):
        try:
            command = decode(msg.data)
        except InvalidCommand:
            return True
        items = command.items if isinstance(command, Releases) else (command,)
        return any(not isinstance(i, Released) or HELD.get(i.name) != msg.src for i in items)
    return False


@settings(max_examples=800, deadline=None)
@given(envelope=ENVELOPE, other=IDS, authenticated_as_src=st.booleans())
def test_random_envelopes_never_raise_and_invalid_ones_never_pass(
    envelope: peer_pb2.PeerEnvelope, other: str, authenticated_as_src: bool
) -> None:
    v = view()
    msg = decode_peer(peer_pb2.PeerEnvelope.FromString(envelope.SerializeToString()))
    if msg is None:
        return  # undecodable: dropped by the transport before any check
    sender = msg.src if authenticated_as_src else other
    reason = check(msg, sender=sender, view=v) or SnapshotGuard().check(msg)
    if reason is None:
        assert not invalid(msg, sender, v), msg
    else:
        assert reason in REASONS
