"""``ReplicaView``: the one read surface the shell has on a ``Replica``.

Rules:

1. The shell (``registry.node`` outside the driver) reads the core only through a view;
   it changes the core only through the driver's inputs. A view is frozen and its
   ``state`` is typed read-only (``RegistryReader``: mappings, no setters), so code
   that holds a view cannot mutate the replica through it.
2. A view is cheap: it copies a dozen scalars and holds references (the registry
   state, bound query methods), never the names themselves — 100k names cost nothing
   per view. The driver builds one lazily after any input, tick or Ready, so a view is
   never older than the last change the shell could have observed.
3. The scalars are a snapshot taken when the view was built; ``state`` and the bound
   queries read the live replica, which only the core loop changes between Readies.
   Hold a view for one decision, not across awaits that must see later changes: ask
   the driver for a fresh one instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Set
from dataclasses import dataclass
from typing import Protocol

from registry.core.durable import StoredCheckpoint, StoredReminder
from registry.core.messages import ConfState, NodeId, Role
from registry.core.state import MemberRecord, NameRecord


class RegistryReader(Protocol):
    """The read-only part of ``RegistryState`` (it satisfies this structurally)."""

    @property
    def names(self) -> Mapping[str, NameRecord]: ...
    @property
    def members(self) -> Mapping[NodeId, MemberRecord]: ...
    @property
    def groups(self) -> Mapping[str, Set[str]]: ...
    @property
    def admitted(self) -> Mapping[NodeId, tuple[str, str]]:
        """Members added by ``MemberAdmit``: client address, peer address."""
        ...

    @property
    def retired(self) -> Set[NodeId]: ...
    @property
    def epoch(self) -> int: ...
    @property
    def applied_index(self) -> int: ...
    def owner(self, name: str) -> NodeId | None: ...
    def held_count(self, node: NodeId) -> int: ...
    def live_count(self) -> int: ...
    def names_with_prefix(self, prefix: str) -> Iterator[str]: ...
    def held_by(self, node: NodeId) -> Iterator[NameRecord]: ...
    def registered(self, name: str) -> NameRecord | None: ...
    def up_members(self) -> list[MemberRecord]: ...
    def waiting(self) -> list[str]: ...
    def checkpoint_of(self, name: str) -> StoredCheckpoint | None: ...
    def reminders_of(self, name: str) -> tuple[StoredReminder, ...]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaView:
    id: NodeId
    role: Role
    term: int
    leader: NodeId
    """``""`` while no leader is known."""
    commit_index: int
    applied_index: int
    last_index: int
    conf: ConfState
    """Voters and learners of the current Raft configuration."""
    incarnation: int
    ticks: int
    """This member's clock (the agent's ticks) when the view was built."""
    state: RegistryReader
    """The committed registry (names, members, groups), read live."""
    term_at: Callable[[int], int | None]
    """The log term at an index (``None``: compacted or past the end)."""
    progress_match: Callable[[NodeId], int | None]
    """How far a peer has replicated, as the leader knows it (``None`` elsewhere)."""
    last_heard: Callable[[NodeId], int]
    """On the leader: the tick (on ``ticks``' clock) it last acked ``node``'s heartbeat."""
    drained: Callable[[], bool]
    """Nothing is held here any more (``Replica.drained``)."""
    binary_entries: bool = True
    """This replica writes binary log entries (every peer reads them)."""
    handover_from: NodeId = ""
    """On a leader: the previous leader whose failure-detector counts it took over
    (membership rule 5, the handover); ``""`` if it counts from its own win."""

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def transfer_target(self) -> NodeId:
        """The most caught-up other voter that is up and not draining (best placed to
        win at once); ``""`` when there is none or this node does not lead."""
        up = {m.node for m in self.state.up_members() if not m.draining}
        best, best_match = "", -1
        for node in sorted(self.conf.voters - {self.id}):
            match = self.progress_match(node) or 0
            if node in up and match > best_match:
                best, best_match = node, match
        return best
