"""A node's simulated stable storage: hard state, one snapshot, the entries after it.

Why it checks what it is given: writes here follow the Ready contract exactly (snapshot,
then entries truncating at their first index, then hard state), so a core that hands out
a gap, or compacts past what it persisted, shows up as an ``IllegalWrite`` at the point
of the mistake rather than as a corrupted log seconds later. Writes are instantly
durable (an fsync that never lies); crashes fall between events, never inside one.
"""

from __future__ import annotations

from registry.core.messages import Entry, HardState, PersistedState, Snapshot


class IllegalWrite(AssertionError):
    """The core asked for a write that cannot be right (a gap, a move backwards)."""


class RaftDisk:
    __slots__ = ("entries", "hard_state", "snapshot", "writes")

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.writes = 0

    @property
    def offset(self) -> int:
        return self.snapshot.meta.index if self.snapshot else 0

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.offset

    def install_snapshot(self, snapshot: Snapshot) -> None:
        """A snapshot received from the leader replaces everything stored."""
        self.snapshot = snapshot
        self.entries = []
        self.writes += 1

    def append(self, entries: tuple[Entry, ...]) -> None:
        first = entries[0].index
        if first <= self.offset:
            raise IllegalWrite(f"append at {first} reaches into the snapshot (..{self.offset})")
        if first > self.last_index + 1:
            raise IllegalWrite(f"append at {first} leaves a gap after {self.last_index}")
        del self.entries[first - self.offset - 1 :]
        self.entries.extend(entries)
        self.writes += 1

    def save_hard_state(self, hard_state: HardState) -> None:
        old = self.hard_state
        if hard_state.term < old.term:
            raise IllegalWrite(f"term moves back from {old.term} to {hard_state.term}")
        if hard_state.term == old.term and old.vote and hard_state.vote != old.vote:
            raise IllegalWrite(
                f"vote in term {old.term} changes from {old.vote} to {hard_state.vote!r}"
            )
        self.hard_state = hard_state
        self.writes += 1

    def compact(self, snapshot: Snapshot) -> None:
        """After ``RawNode.compact``: keep ``snapshot`` and drop entries it covers."""
        index = snapshot.meta.index
        if index <= self.offset:
            raise IllegalWrite(f"compaction to {index} is not past the snapshot {self.offset}")
        if index > self.last_index:
            raise IllegalWrite(f"compaction to {index} is past the stored log {self.last_index}")
        del self.entries[: index - self.offset]
        self.snapshot = snapshot
        self.writes += 1

    def load(self) -> PersistedState | None:
        """What a restarting node finds; ``None`` for a node that never wrote anything."""
        if not self.writes:
            return None
        return PersistedState(
            hard_state=self.hard_state, snapshot=self.snapshot, entries=tuple(self.entries)
        )
