"""The Raft log as the core sees it: a snapshot followed by entries, some not yet stable.

Layout (indexes are 1-based; ``offset`` is the snapshot's last index)::

    [ snapshot (.. offset) ][ entries offset+1 .. last ]
                                        ^ unstable_from: entries from here on are not yet
                                          persisted and go out in the next Ready
    applied <= committed <= last

Invariants kept here: entries are contiguous; ``committed`` never moves back; nothing at
or below ``committed`` is ever truncated (that would lose an acknowledged write, so it
raises ``RaftInvariantError`` rather than continue).
"""

from __future__ import annotations

from registry.core.errors import RegistryError
from registry.core.messages import ConfState, Entry, Snapshot, SnapshotMeta


class RaftInvariantError(RegistryError, AssertionError):
    """The core found its own state impossible. Always a bug; never caused by input."""


class RaftLog:
    __slots__ = ("applied", "committed", "entries", "pending_snapshot", "snapshot", "unstable_from")

    def __init__(self, snapshot: Snapshot, entries: tuple[Entry, ...], committed: int) -> None:
        self.snapshot = snapshot
        offset = snapshot.meta.index
        self.entries: list[Entry] = [e for e in entries if e.index > offset]
        for position, entry in enumerate(self.entries):
            if entry.index != offset + 1 + position:
                raise RaftInvariantError(
                    f"stored log is not contiguous at index {entry.index} "
                    f"(expected {offset + 1 + position})"
                )
        self.committed = min(max(committed, offset), self.last_index)
        self.applied = offset
        self.unstable_from = self.last_index + 1
        self.pending_snapshot: Snapshot | None = None
        """A snapshot received from the leader, not yet handed out in a Ready."""

    # -- positions ---------------------------------------------------------------------

    @property
    def offset(self) -> int:
        return self.snapshot.meta.index

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.meta.term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; ``None`` when compacted away or not there."""
        offset = self.offset
        if index == offset:
            return self.snapshot.meta.term
        if offset < index <= offset + len(self.entries):
            return self.entries[index - offset - 1].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """The voting rule (§5.4.1): is a candidate's log at least as up-to-date as ours?"""
        mine = self.last_term
        return last_term > mine or (last_term == mine and last_index >= self.last_index)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index < hi``; ``lo`` must be above the snapshot."""
        offset = self.offset
        if lo <= offset:
            raise RaftInvariantError(f"slice from {lo} reaches into the snapshot (..{offset})")
        return self.entries[lo - offset - 1 : hi - offset - 1]

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """Largest index ≤ ``index`` whose term is ≤ ``term`` (fast log back-off, as in
        etcd-io/raft): every entry between it and ``index`` is known not to match."""
        index = min(index, self.last_index)
        while index > self.offset:
            found = self.term(index)
            if found is not None and found <= term:
                break
            index -= 1
        return max(index, self.offset)

    # -- mutation ----------------------------------------------------------------------

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> int:
        """Write ``entries`` at their indexes, truncating whatever follows. Returns the
        lowest truncated index (or ``last_index + 1`` when nothing was cut)."""
        if not entries:
            return self.last_index + 1
        first = entries[0].index
        if first <= self.committed:
            raise RaftInvariantError(
                f"append at {first} would overwrite committed entries (commit {self.committed})"
            )
        if first > self.last_index + 1:
            raise RaftInvariantError(f"append at {first} leaves a gap after {self.last_index}")
        cut = first
        del self.entries[first - self.offset - 1 :]
        self.entries.extend(entries)
        self.unstable_from = min(self.unstable_from, first)
        return cut

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: tuple[Entry, ...]
    ) -> int | None:
        """The follower side of AppendEntries: if our log matches at ``prev_index``, keep
        what agrees, replace what conflicts, advance the commit index; return the last index
        now known to match the leader. ``None`` when the consistency check fails."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(entries)
        conflict = self._find_conflict(entries)
        if conflict:
            self.append(entries[conflict - prev_index - 1 :])
        self.commit_to(min(commit, last_new))
        return last_new

    def _find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first entry that is new or disagrees with ours; 0 when all agree."""
        for entry in entries:
            if not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def commit_to(self, index: int) -> bool:
        if index > self.committed:
            if index > self.last_index:
                raise RaftInvariantError(
                    f"commit {index} is beyond the last index {self.last_index}"
                )
            self.committed = index
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.snapshot = snapshot
        self.entries = []
        self.committed = snapshot.meta.index
        self.applied = snapshot.meta.index
        self.unstable_from = snapshot.meta.index + 1
        self.pending_snapshot = snapshot

    def compact(self, index: int, data: bytes, conf: ConfState) -> Snapshot:
        """Drop entries up to ``index`` (already applied), keeping a snapshot in their place."""
        if index <= self.offset:
            raise RaftInvariantError(f"compact to {index}: already compacted to {self.offset}")
        if index > self.applied:
            raise RaftInvariantError(f"compact to {index}: only {self.applied} is applied")
        term = self.term(index)
        if term is None:
            raise RaftInvariantError(f"compact to {index}: no entry there")
        snapshot = Snapshot(meta=SnapshotMeta(index=index, term=term, conf=conf), data=data)
        del self.entries[: index - self.offset]
        self.snapshot = snapshot
        return snapshot

    # -- Ready support -----------------------------------------------------------------

    def unstable_entries(self) -> tuple[Entry, ...]:
        if self.unstable_from > self.last_index:
            return ()
        return tuple(self.entries[self.unstable_from - self.offset - 1 :])

    def next_committed(self, limit: int, max_bytes: int | None = None) -> tuple[Entry, ...]:
        """The next committed entries to apply: at most ``limit`` of them and, past the
        first, at most ``max_bytes`` of data (etcd-io/raft's MaxCommittedSizePerReady:
        one Ready's apply is a stretch the node does nothing else)."""
        lo = max(self.applied + 1, self.first_index)
        hi = min(self.committed, lo + limit - 1)
        if hi < lo:
            return ()
        entries = self.slice(lo, hi + 1)
        if max_bytes is not None:
            size = 0
            for count, entry in enumerate(entries):
                size += len(entry.data)
                if size > max_bytes and count > 0:
                    return tuple(entries[:count])
        return tuple(entries)
