"""Values the SDK returns and accepts: frozen, slotted dataclasses, converted from the
wire (``registry.v1``) in this module only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass

from registry.v1 import registry_pb2 as pb

__all__ = [
    "ClusterStatus",
    "Location",
    "Member",
    "Placed",
    "Registration",
    "Removed",
    "Reset",
    "Synced",
    "Waiting",
    "WatchEvent",
]

Priority = Sequence[str | Sequence[str]]
"""A dist_ac-style priority list: ``["a", ["b", "c"]]`` means a first, else b or c."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    """Where a name runs right now."""

    name: str
    """The registered name."""
    node: str
    """The node that runs its activation, e.g. ``"n2"``."""
    address: str
    """That node's gRPC ``host:port`` (calls go straight there)."""
    token: int
    """The activation's fencing token (G2): strictly greater than every earlier
    activation's. The worker sees the same value as ``ctx.token``."""
    stale: bool = False
    """Answered by a node without quorum: possibly out of date (G6)."""
    kind: str = ""
    """The worker kind it was registered with."""
    call_address: str = ""
    active: bool | None = None
    """Whether the activation has an instance now (false: lazy before its first message,
    or passivated); ``None`` unless the node that answered runs it."""
    """The worker host port that serves calls for it directly (no hop through the
    node), when the node that answered runs it; else ``""``. The SDK uses it by itself."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One name to register (``register_many``): ``Registration("room-1", "room")``."""

    name: str
    """The name (1–255 bytes of UTF-8, no control characters)."""
    kind: str
    """The worker kind the nodes know (e.g. ``"counter"``)."""
    _: KW_ONLY
    args: bytes = b""
    """Opaque arguments the worker gets as ``ctx.args``."""
    roles: Sequence[str] = ()
    """Only members offering all of these roles may run it."""
    priority: Priority | None = None
    """A priority list of node ids instead of the hash ring (first up member wins, with
    takeover when a higher one returns). A bare string is one tier of one node."""
    restart: str | None = None
    """Restart policy: ``"permanent"`` (restarted after a crash or ``ctx.stop()``),
    ``"transient"`` (only after a crash), ``"temporary"`` (never; the name is
    unregistered when its activation stops). ``None``: the node's default (permanent)."""
    max_restarts: int | None = None
    """Crashes tolerated within ``restart_window`` seconds (``None``: 5)."""
    restart_window: float | None = None
    """Seconds over which crashes count (``None``: 10)."""
    lazy: bool = False
    """Placed, but started only at its first message (call, cast, reminder)."""
    idle_after: float = 0.0
    """Passivate after this many seconds without messages (its ``begin_handoff`` state
    is checkpointed; the next message starts it again). 0: never."""

    def to_pb(self) -> pb.NameSpec:
        """The wire form (``registry.v1.NameSpec``)."""
        # Only the fields that are set: a batch of 1000 names spent half of this in
        # copying defaults into the message.
        spec = pb.NameSpec(name=self.name, kind=self.kind)
        if self.args:
            spec.args = self.args
        if self.roles:
            spec.roles.extend(self.roles)
        if isinstance(self.priority, str):
            spec.priority.add(nodes=[self.priority])
        else:
            for tier in self.priority or ():
                spec.priority.add(nodes=[tier] if isinstance(tier, str) else list(tier))
        if self.restart:
            spec.restart = self.restart
        if self.lazy:
            spec.lazy = True
        if self.idle_after:
            spec.idle_after = self.idle_after
        if self.max_restarts is not None:
            spec.max_restarts = self.max_restarts
        if self.restart_window is not None:
            spec.restart_window = self.restart_window
        return spec


@dataclass(frozen=True, slots=True, kw_only=True)
class Member:
    """One member of the cluster as ``cluster()`` reports it."""

    id: str
    """Node id."""
    address: str
    """gRPC ``host:port``."""
    roles: tuple[str, ...]
    """Roles it offers."""
    up: bool
    """In the committed view (holds a lease, runs workers)."""
    voter: bool
    """A Raft voter (otherwise a learner)."""
    incarnation: int
    """Bumped on every restart of the node."""
    activations: int
    """Names it runs."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterStatus:
    """The cluster as one node (``node``) sees it."""

    node: str
    """The node that answered."""
    leader: str
    """The Raft leader it knows, or ``""``."""
    leader_address: str
    """The leader's gRPC address, or ``""``."""
    term: int
    """Current Raft term."""
    quorum: bool
    """Whether the answering node holds a member lease (is on the quorum side)."""
    commit_index: int
    """Raft commit index."""
    applied_index: int
    """Index applied to its replica."""
    members: tuple[Member, ...]
    """Every member, sorted by id."""
    names: int
    """Registered names."""
    lease_remaining_s: float
    """Seconds left on its member lease."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Reset:
    """Watch: forget what you know under the prefix; a full listing follows (on
    connect, after a reconnect, or after the stream fell behind)."""

    index: int
    """The log index the listing reflects."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Synced:
    """Watch: the listing after ``Reset`` is complete; live changes follow."""

    index: int
    """The log index the listing reflects."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Placed:
    """Watch: ``location.name`` now runs at ``location`` (new, moved or restarted)."""

    location: Location
    """Where it runs."""
    index: int
    """The log index of the change."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Waiting:
    """Watch: ``name`` is registered but waits for an eligible member to run it."""

    name: str
    """The registered name."""
    index: int
    """The log index of the change."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Removed:
    """Watch: ``name`` was unregistered."""

    name: str
    """The name."""
    index: int
    """The log index of the change."""


WatchEvent = Reset | Synced | Placed | Waiting | Removed
"""What ``watch()`` yields."""


def location_from_pb(loc: pb.Location) -> Location:
    """Convert a wire ``Location`` (must have a node)."""
    return Location(
        name=loc.name,
        node=loc.node,
        address=loc.address,
        token=loc.token,
        stale=loc.stale,
        kind=loc.kind,
        call_address=loc.call_address,
        active=loc.active if loc.HasField("active") else None,
    )


def event_from_pb(event: pb.WatchEvent) -> WatchEvent | None:
    """Convert a wire ``WatchEvent``; ``None`` for a kind this SDK does not know."""
    kind = event.kind
    if kind == pb.WatchEvent.KIND_RESET:
        return Reset(index=event.index)
    if kind == pb.WatchEvent.KIND_SYNCED:
        return Synced(index=event.index)
    if kind == pb.WatchEvent.KIND_REMOVED:
        return Removed(name=event.location.name, index=event.index)
    if kind == pb.WatchEvent.KIND_PLACED:
        if not event.location.node:
            return Waiting(name=event.location.name, index=event.index)
        return Placed(location=location_from_pb(event.location), index=event.index)
    return None


def cluster_from_pb(status: pb.ClusterStatus) -> ClusterStatus:
    """Convert a wire ``ClusterStatus``."""
    return ClusterStatus(
        node=status.node,
        leader=status.leader,
        leader_address=status.leader_address,
        term=status.term,
        quorum=status.quorum,
        commit_index=status.commit_index,
        applied_index=status.applied_index,
        members=tuple(
            Member(
                id=m.id,
                address=m.address,
                roles=tuple(m.roles),
                up=m.up,
                voter=m.voter,
                incarnation=m.incarnation,
                activations=m.activations,
            )
            for m in status.members
        ),
        names=status.names,
        lease_remaining_s=status.lease_remaining_s,
    )
