"""Core values ↔ protobuf messages. The only module that knows both sides.

Field-for-field copies; the proto drift test keeps the two definitions in step.

The transport uses ``encode_peer``/``decode_peer``, which never raise: whatever arrives
from the network (an unknown enum value, a field out of range) or cannot be put on it
(an integer past uint64) becomes ``None`` — one message dropped, never a dead loop.
"""

from __future__ import annotations

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
from registry.v1 import peer_pb2, raft_pb2


def entry_to_pb(entry: Entry) -> raft_pb2.Entry:
    return raft_pb2.Entry(
        term=entry.term,
        index=entry.index,
        type=int(entry.type),  # type: ignore[arg-type]  # the enum's number (no name lookup)
        data=entry.data,
    )


def entry_from_pb(pb: raft_pb2.Entry) -> Entry:
    return Entry(term=pb.term, index=pb.index, type=EntryType(pb.type), data=pb.data)


def conf_to_pb(conf: ConfState) -> raft_pb2.ConfState:
    return raft_pb2.ConfState(voters=sorted(conf.voters), learners=sorted(conf.learners))


def conf_from_pb(pb: raft_pb2.ConfState) -> ConfState:
    return ConfState(voters=frozenset(pb.voters), learners=frozenset(pb.learners))


def meta_to_pb(meta: SnapshotMeta) -> raft_pb2.SnapshotMeta:
    return raft_pb2.SnapshotMeta(index=meta.index, term=meta.term, conf=conf_to_pb(meta.conf))


def meta_from_pb(pb: raft_pb2.SnapshotMeta) -> SnapshotMeta:
    return SnapshotMeta(index=pb.index, term=pb.term, conf=conf_from_pb(pb.conf))


def handover_to_pb(handover: Handover) -> raft_pb2.Handover:
    return raft_pb2.Handover(
        prior=handover.prior,
        members=[
            raft_pb2.MemberSilence(node=m.node, ticks=m.ticks, acked=m.acked)
            for m in handover.members
        ],
    )


def handover_from_pb(pb: raft_pb2.Handover) -> Handover:
    return Handover(
        prior=pb.prior,
        members=tuple(MemberSilence(node=m.node, ticks=m.ticks, acked=m.acked) for m in pb.members),
    )


def message_to_pb(msg: Message) -> raft_pb2.Message:
    pb = raft_pb2.Message(
        type=int(msg.type),  # type: ignore[arg-type]  # the enum's number (no name lookup)
        src=msg.src,
        dst=msg.dst,
        term=msg.term,
        log_term=msg.log_term,
        index=msg.index,
        entries=[entry_to_pb(e) for e in msg.entries],
        commit=msg.commit,
        reject=msg.reject,
        reject_hint=msg.reject_hint,
        context=msg.context,
        force=msg.force,
        chunk=msg.chunk,
        offset=msg.offset,
        done=msg.done,
    )
    if msg.snapshot is not None:
        pb.snapshot.CopyFrom(meta_to_pb(msg.snapshot))
    if msg.handover is not None:
        pb.handover.CopyFrom(handover_to_pb(msg.handover))
    return pb


def message_from_pb(pb: raft_pb2.Message) -> Message:
    return Message(
        type=MessageType(pb.type),
        src=pb.src,
        dst=pb.dst,
        term=pb.term,
        log_term=pb.log_term,
        index=pb.index,
        entries=tuple(entry_from_pb(e) for e in pb.entries),
        commit=pb.commit,
        reject=pb.reject,
        reject_hint=pb.reject_hint,
        context=pb.context,
        force=pb.force,
        snapshot=meta_from_pb(pb.snapshot) if pb.HasField("snapshot") else None,
        chunk=pb.chunk,
        offset=pb.offset,
        done=pb.done,
        handover=handover_from_pb(pb.handover) if pb.HasField("handover") else None,
    )


def peer_to_pb(msg: PeerMessage) -> peer_pb2.PeerEnvelope:
    if isinstance(msg, Message):
        return peer_pb2.PeerEnvelope(raft=message_to_pb(msg))
    if isinstance(msg, MemberHeartbeat):
        return peer_pb2.PeerEnvelope(
            heartbeat=peer_pb2.MemberHeartbeat(
                src=msg.src,
                dst=msg.dst,
                seq=msg.seq,
                incarnation=msg.incarnation,
                address=msg.address,
                roles=list(msg.roles),
                kinds=list(msg.kinds),
                has_lease=msg.has_lease,
                draining=msg.draining,
                applied=msg.applied,
            )
        )
    if isinstance(msg, MemberAck):
        return peer_pb2.PeerEnvelope(
            ack=peer_pb2.MemberAck(
                src=msg.src, dst=msg.dst, seq=msg.seq, incarnation=msg.incarnation, index=msg.index
            )
        )
    return peer_pb2.PeerEnvelope(forward=peer_pb2.Forward(src=msg.src, dst=msg.dst, data=msg.data))


def encode_peer(msg: PeerMessage) -> peer_pb2.PeerEnvelope | None:
    """``peer_to_pb``, or ``None`` when a value does not fit the wire (say a term ≥ 2**64)."""
    try:
        return peer_to_pb(msg)
    except (ValueError, TypeError, OverflowError):
        return None


def decode_peer(pb: peer_pb2.PeerEnvelope) -> PeerMessage | None:
    """``peer_from_pb``, or ``None`` for anything it cannot turn into a core value."""
    try:
        return peer_from_pb(pb)
    except (ValueError, TypeError, OverflowError):
        return None


def peer_from_pb(pb: peer_pb2.PeerEnvelope) -> PeerMessage | None:
    """``None`` for an empty or unknown envelope (a newer peer): ignore it."""
    body = pb.WhichOneof("body")
    if body == "raft":
        return message_from_pb(pb.raft)
    if body == "heartbeat":
        hb = pb.heartbeat
        return MemberHeartbeat(
            src=hb.src,
            dst=hb.dst,
            seq=hb.seq,
            incarnation=hb.incarnation,
            address=hb.address,
            roles=tuple(hb.roles),
            kinds=tuple(hb.kinds),
            has_lease=hb.has_lease,
            draining=hb.draining,
            applied=hb.applied,
        )
    if body == "ack":
        ack = pb.ack
        return MemberAck(
            src=ack.src, dst=ack.dst, seq=ack.seq, incarnation=ack.incarnation, index=ack.index
        )
    if body == "forward":
        return Forward(src=pb.forward.src, dst=pb.forward.dst, data=pb.forward.data)
    return None
