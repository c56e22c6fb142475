"""Every peer message survives the trip through protobuf bytes unchanged."""

from __future__ import annotations

import pytest

from registry.core.membership import MemberAck, MemberHeartbeat
from registry.core.messages import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    SnapshotMeta,
)
from registry.core.replica import Forward, PeerMessage
from registry.v1 import peer_pb2
from registry.wire.codec import peer_from_pb, peer_to_pb

SAMPLES: list[PeerMessage] = [
    Message(
        type=MessageType.APPEND,
        src="n1",
        dst="n2",
        term=7,
        log_term=6,
        index=41,
        entries=(
            Entry(term=7, index=42, data=b"\x00cmd"),
            Entry(term=7, index=43, type=EntryType.CONF_CHANGE, data=b"0:n4"),
        ),
        commit=40,
    ),
    Message(
        type=MessageType.APPEND_RESP,
        src="n2",
        dst="n1",
        term=7,
        index=9,
        reject=True,
        reject_hint=5,
        log_term=3,
    ),
    Message(type=MessageType.VOTE, src="n3", dst="n1", term=8, index=43, log_term=7, force=True),
    Message(type=MessageType.HEARTBEAT, src="n1", dst="n2", term=7, commit=43, context=99),
    Message(
        type=MessageType.SNAPSHOT,
        src="n1",
        dst="n3",
        term=7,
        snapshot=SnapshotMeta(
            index=40,
            term=6,
            conf=ConfState(voters=frozenset({"n1", "n2"}), learners=frozenset({"n3"})),
        ),
        chunk=b"abc" * 100,
        offset=300,
        done=True,
    ),
    MemberHeartbeat(
        src="n2",
        dst="n1",
        seq=5,
        incarnation=3,
        address="127.0.0.1:7401",
        roles=("web",),
        kinds=("counter", "echo"),
        has_lease=True,
    ),
    MemberAck(src="n1", dst="n2", seq=5, incarnation=3, index=44),
    Forward(src="n2", dst="n1", data=b'{"kind":"released"}'),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip_through_bytes(msg: PeerMessage) -> None:
    wire = peer_to_pb(msg).SerializeToString()
    assert peer_from_pb(peer_pb2.PeerEnvelope.FromString(wire)) == msg


def test_an_empty_envelope_decodes_to_nothing() -> None:
    assert peer_from_pb(peer_pb2.PeerEnvelope()) is None
