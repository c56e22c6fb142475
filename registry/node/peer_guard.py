"""Peer input is bad input: every decoded peer message is checked here before the core
sees it.

Theory of operation
-------------------
The transport authenticates a stream (mTLS: the client certificate's CN is the sender's
node id) and decodes each envelope; ``check`` then decides, from the message and a small
read-only ``PeerView`` of this replica (term, leader, commit, log terms, who is in the
cluster, who holds a name), whether the core may see it. A refused message is dropped
and counted by reason; nothing else happens (Raft and the lease protocol tolerate loss).

Rules (a refusal reason each, the label of ``registry_peer_messages_refused_total``):

- ``undecodable``: the envelope does not decode (unknown message/entry type, empty).
- ``wrong_dst``: not addressed to this node.
- ``identity_mismatch``: ``src`` is not the authenticated identity of the stream (or, with
  ``--insecure-peers``, not the ``src`` the stream began with).
- ``unknown_sender``: ``src`` is not a configured peer, a Raft voter or learner, or (for
  member traffic) a member of the committed membership; or it is this node itself.
  Raft traffic to a node with an empty log is exempt: a learner added at runtime (its
  ``peers`` may predate the current leader) learns the members from the first append;
  the stream is still authenticated (mTLS) and of this cluster (cluster id). So is Raft
  traffic to a node that has no leader: a node cut off while a member was added knows
  neither the new member nor that it may have become leader, and refusing its appends
  and votes would strand the node (or stall an election) for good. Once it follows such
  a member (its first heartbeat got through), it keeps hearing it: refusing its leader's
  appends left it without the change that adds the leader, and the leader without the
  quorum it needed. A node refuses Raft traffic from anyone else outside its
  configuration.
- ``retired_member``: ``src`` was removed by an operator (``MemberRemove``) and is no
  longer in the Raft configuration: its id is retired for good, whatever its
  certificate or configuration says (a removed node that comes back is refused).
- ``huge_value``: an integer field of 2^63 or more (no honest term, index or sequence
  number gets there; past 2^64 the codec and storage cannot even hold them).
- ``term_jump``: a Raft term more than ``MAX_TERM_JUMP`` above ours — unless this node
  holds no log yet (a fresh node must learn the cluster's term, whatever it is).
- ``second_leader``: leader traffic (append, heartbeat, snapshot) in our current term
  from a node other than the leader we know for it (Raft's election safety: one leader
  per term).
- ``committed_conflict``: an append of our current term or later whose previous entry or
  entries lie at or below our commit index with a term other than ours there (committed
  entries never change). An append of an older term is left to Raft, which refuses it and
  answers with our term (a deposed leader's log may rightly disagree with our commits).
- ``non_contiguous``: an append whose entries do not follow ``index`` one by one, or whose
  terms decrease, or exceed the message's term.
- ``bad_entry``: a configuration-change entry that does not decode.
- ``snapshot_too_big`` / ``snapshot_undecodable``: a snapshot transfer past
  ``SNAPSHOT_CAP_BYTES``, or whose assembled bytes do not decode as registry state.
- ``unknown_member``: a member heartbeat for an id that is neither a configured peer, a
  Raft member nor in the committed membership (members are admitted by configuration,
  never by a heartbeat alone).
- ``forward_not_allowed``: a ``Forward`` (follower → leader proposal) that is not a
  release of names the sender holds (the only proposal a follower is entitled to ask:
  never ``MemberDown``/``MemberUp``, never someone else's names). An item for an
  activation that is no longer current (a stale token: a release re-sent after it was
  applied) passes: the state machine refuses it by token and changes nothing.

Three more reasons count streams, not messages: ``cluster_mismatch`` (a peer of another
cluster id), ``tls_handshake`` (a peer whose certificate did not verify as the node
dialled) and ``protocol_version`` (a peer speaking a peer protocol version outside the
accepted range, ``registry.node.peer_protocol``).

Everything here is a pure function of its arguments, except ``SnapshotGuard``, which
mirrors the transfer being assembled (bounded by the cap).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, fields

from registry.core.commands import (
    Checkpoint,
    InvalidCommand,
    Quit,
    Released,
    Releases,
    Remind,
    decode,
)
from registry.core.membership import MemberAck, MemberHeartbeat
from registry.core.messages import ConfChange, EntryType, Message, MessageType, NodeId
from registry.core.replica import Forward, PeerMessage
from registry.core.state import RegistryState
from registry.core.view import ReplicaView

log = logging.getLogger("registry.peers")

MAX_WIRE_INT = (1 << 63) - 1
MAX_TERM_JUMP = 10_000
"""Largest accepted step above our own term. Terms grow by one per election (pre-vote
keeps a cut-off node from inflating its own), so an honest cluster takes thousands of
elections to get this far ahead of a member that still holds a log."""
SNAPSHOT_CAP_BYTES = 256 << 20
"""Largest snapshot transfer accepted, bytes (a million names is well under this)."""
REFUSAL_LOG_INTERVAL_S = 1.0

REASONS = (
    "undecodable",
    "wrong_dst",
    "identity_mismatch",
    "unknown_sender",
    "retired_member",
    "huge_value",
    "term_jump",
    "second_leader",
    "committed_conflict",
    "non_contiguous",
    "bad_entry",
    "snapshot_too_big",
    "snapshot_undecodable",
    "unknown_member",
    "forward_not_allowed",
    "cluster_mismatch",
    "tls_handshake",
    "protocol_version",
)
_LEADER_TYPES = (MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT)


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerView:
    """What the guard may read of this replica (read-only; built per message)."""

    node: NodeId
    term: int
    leader: NodeId
    commit: int
    last_index: int
    term_at: Callable[[int], int | None]
    """This replica's log term at an index (``None``: compacted or past the end)."""
    raft_members: frozenset[NodeId]
    """Voters and learners of the current Raft configuration."""
    configured: frozenset[NodeId]
    """The bootstrap peers of this node's configuration."""
    members: Mapping[NodeId, object]
    """The committed membership (ids → records; only the keys are read)."""
    holder_of: Callable[[str], NodeId | None]
    """Who holds a name now (``None``: not registered or not placed)."""
    retired: AbstractSet[NodeId] = frozenset()
    """Members an operator removed (committed ``MemberRetire``)."""
    token_of: Callable[[str], int | None] = lambda _name: None
    """The token of a name's current activation (``None``: unknown or not placed)."""


def view_of(raft: ReplicaView, configured: frozenset[NodeId]) -> PeerView:
    state = raft.state

    def holder_of(name: str) -> NodeId | None:
        record = state.names.get(name)
        return record.holder if record is not None and record.holder else None

    def token_of(name: str) -> int | None:
        record = state.names.get(name)
        return record.token if record is not None and record.holder else None

    return PeerView(
        node=raft.id,
        term=raft.term,
        leader=raft.leader,
        commit=raft.commit_index,
        last_index=raft.last_index,
        term_at=raft.term_at,
        raft_members=raft.conf.members(),
        configured=configured,
        members=state.members,
        holder_of=holder_of,
        retired=state.retired,
        token_of=token_of,
    )


def check(msg: PeerMessage, *, sender: NodeId | None, view: PeerView) -> str | None:
    """Why ``msg`` must not reach the core (a reason of ``REASONS``), or ``None``.

    ``sender``: the authenticated identity of the stream it came on (``None``: unknown)."""
    if msg.dst != view.node:
        return "wrong_dst"
    if sender is not None and msg.src != sender:
        return "identity_mismatch"
    if _has_huge_int(msg):
        return "huge_value"
    if msg.src in view.retired and msg.src not in view.raft_members:
        return "retired_member"
    known = view.configured | view.raft_members
    if isinstance(msg, Message):
        # A node that holds no log yet (a learner added at runtime) learns who the members
        # are from its first append; a node without a leader may have missed a member
        # change, and so may one that follows a leader it does not know (it must hear
        # that leader out to learn the change). Each may hear from a member it does not
        # know yet.
        lagging = view.last_index == 0 or (sender is not None and view.leader in ("", msg.src))
        if msg.src == view.node or (msg.src not in known and not lagging):
            return "unknown_sender"
        return _check_raft(msg, view)
    if msg.src == view.node or (msg.src not in known and msg.src not in view.members):
        return "unknown_member" if isinstance(msg, MemberHeartbeat) else "unknown_sender"
    if isinstance(msg, Forward):
        return _check_forward(msg, view)
    return None


_INT_FIELDS: dict[type, tuple[str, ...]] = {}


def _int_fields(cls: type) -> tuple[str, ...]:
    names = _INT_FIELDS.get(cls)
    if names is None:  # annotations are strings here (``from __future__ import annotations``)
        names = _INT_FIELDS[cls] = tuple(f.name for f in fields(cls) if f.type in ("int", int))
    return names


def _has_huge_int(msg: PeerMessage) -> bool:
    if any(getattr(msg, name) > MAX_WIRE_INT for name in _int_fields(type(msg))):
        return True
    if isinstance(msg, Message):
        if any(e.term > MAX_WIRE_INT or e.index > MAX_WIRE_INT for e in msg.entries):
            return True
        if msg.handover and any(m.ticks > MAX_WIRE_INT for m in msg.handover.members):
            return True
        meta = msg.snapshot
        if meta is not None and (meta.index > MAX_WIRE_INT or meta.term > MAX_WIRE_INT):
            return True
    return False


def _check_raft(msg: Message, view: PeerView) -> str | None:
    if msg.term > view.term + MAX_TERM_JUMP and view.last_index > 0:
        return "term_jump"
    if (
        msg.type in _LEADER_TYPES
        and msg.term == view.term
        and view.leader
        and msg.src != view.leader
    ):
        return "second_leader"
    if msg.type is MessageType.APPEND:
        return _check_append(msg, view)
    return None


def _check_append(msg: Message, view: PeerView) -> str | None:
    previous_term = msg.log_term
    for position, entry in enumerate(msg.entries):
        if entry.index != msg.index + 1 + position:
            return "non_contiguous"
        if entry.term < previous_term or entry.term > msg.term:
            return "non_contiguous"
        previous_term = entry.term
        if entry.type is EntryType.CONF_CHANGE:
            try:
                ConfChange.decode(entry.data)
            except (ValueError, UnicodeDecodeError):
                return "bad_entry"
    if msg.term < view.term:
        # A deposed leader's append still in flight: Raft refuses it by term and answers
        # with ours, which is how the old leader learns it was deposed. Its log may
        # rightly disagree with what the new leader committed.
        return None
    # Committed entries never change: ours at or below commit must be what it claims.
    if msg.index <= view.commit and _conflicts(view, msg.index, msg.log_term):
        return "committed_conflict"
    for entry in msg.entries:
        if entry.index > view.commit:
            break
        if _conflicts(view, entry.index, entry.term):
            return "committed_conflict"
    return None


def _conflicts(view: PeerView, index: int, term: int) -> bool:
    ours = view.term_at(index)
    return ours is not None and ours != term


def _check_forward(msg: Forward, view: PeerView) -> str | None:
    try:
        command = decode(msg.data)
    except InvalidCommand:
        return "forward_not_allowed"
    items = command.items if isinstance(command, Releases) else (command,)
    for item in items:
        if not isinstance(item, Released | Checkpoint | Quit | Remind):
            return "forward_not_allowed"
        if view.holder_of(item.name) != msg.src and not _stale(item, view):
            return "forward_not_allowed"
    return None


def _stale(item: Released | Checkpoint | Quit | Remind, view: PeerView) -> bool:
    """An item for an activation that is no longer the name's current one: a follower
    re-sending a release the leader already applied (its own state lags). The state
    machine refuses it by token and changes nothing, so it is no forgery; refusing it
    refused the whole batch of releases it came in (a rebalance's other releases
    waited for the retry). An item naming the current activation of a name held by
    someone else is still refused."""
    current = view.token_of(item.name)
    return current is not None and current != item.token


class SnapshotGuard:
    """Mirrors each sender's snapshot transfer (as ``RawNode`` assembles it) so that a
    transfer past the cap, or whose bytes do not decode, is refused before the core
    keeps or installs it. A resent chunk (same snapshot, earlier offset) rewinds."""

    def __init__(self, cap: int = SNAPSHOT_CAP_BYTES) -> None:
        self.cap = cap
        self._incoming: dict[NodeId, tuple[object, bytearray]] = {}

    def check(self, msg: PeerMessage) -> str | None:
        if not isinstance(msg, Message) or msg.type is not MessageType.SNAPSHOT:
            return None
        meta = msg.snapshot
        if meta is None:
            return None  # the core ignores it
        if msg.offset + len(msg.chunk) > self.cap:
            self._incoming.pop(msg.src, None)
            return "snapshot_too_big"
        current = self._incoming.get(msg.src)
        if msg.offset == 0 or current is None or current[0] != meta:
            if msg.offset != 0:
                return None  # the core cannot place it either and asks for a restart
            current = self._incoming[msg.src] = (meta, bytearray())
        data = current[1]
        if msg.offset > len(data):
            return None  # a gap: the core asks for the transfer again from where it is
        del data[msg.offset :]
        data.extend(msg.chunk)
        if not msg.done:
            return None
        del self._incoming[msg.src]
        try:
            RegistryState.restore(bytes(data))
        except Exception:  # hostile bytes may fail in any way; none may reach the core
            return "snapshot_undecodable"
        return None


class RefusalLog:
    """Counts refusals; logs at most one line per reason per second (with how many
    were refused since the last line), never a traceback."""

    def __init__(
        self, count: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._count = count
        self._clock = clock
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def refuse(self, reason: str, detail: str) -> None:
        self._count(reason)
        now = self._clock()
        last = self._last.get(reason)
        if last is not None and now - last < REFUSAL_LOG_INTERVAL_S:
            self._quiet[reason] = self._quiet.get(reason, 0) + 1
            return
        self._last[reason] = now
        more = self._quiet.pop(reason, 0)
        suffix = f" (and {more} more since the last line)" if more else ""
        log.warning("refused a peer message (%s): %s%s", reason, detail, suffix)


def describe(msg: PeerMessage) -> str:
    """A short, bounded description of a message for a log line."""
    if isinstance(msg, Message):
        kind = msg.type.name
    elif isinstance(msg, MemberHeartbeat):
        kind = "member heartbeat"
    elif isinstance(msg, MemberAck):
        kind = "member ack"
    else:
        kind = "forward"
    term = f" term {msg.term}" if isinstance(msg, Message) else ""
    return f"{kind} from {msg.src[:64]!r} to {msg.dst[:64]!r}{term}"
