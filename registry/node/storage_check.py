"""Start-up checks of a data directory, shared by the node and ``registry doctor``.

``FileStorage.load`` refuses damage to the files themselves (bad records, empty segments,
holes in the log; see the rules in ``registry/node/storage.py``). This module adds the
Raft rules a loaded state must obey — a crash cannot break them, because of the write
order the storage keeps (its rule 6), so breaking one means data was lost:

1. The hard state's term is never behind the snapshot's term, nor behind the term of
   any entry in the log: a term (and the vote cast in it) that went backwards lets the
   node vote twice in one term.
2. The commit index is never beyond the last log index (or the snapshot's index): a
   commit there means the end of the log, acknowledged entries, is gone.

``load_checked`` is what a node runs at start-up: any problem raises ``StorageCorrupt``
with one line naming the file and what is wrong, plus ``RECOVERY`` (the node exits 2).
``inspect`` is ``registry doctor``: it changes nothing on disk and reports what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from registry.core.commands import InvalidCommand, decode
from registry.core.messages import EntryType, PersistedState
from registry.core.state import RegistryState
from registry.node.storage import DataDirLocked, FileStorage, Loaded, StorageCorrupt

__all__ = ["RECOVERY", "Report", "inspect", "load_checked", "problems"]

RECOVERY = (
    "to recover, remove this member and re-add it with an empty data directory, or "
    "restore a backup (docs/operations.md, 'Recovering a damaged data directory')"
)


def problems(loaded: Loaded, data_dir: Path) -> list[str]:
    """What breaks the rules above, one line each (empty: healthy)."""
    p = loaded.persisted
    hard, snap = p.hard_state, p.snapshot
    where = data_dir / loaded.hard_state_file if loaded.hard_state_file else data_dir
    found = []
    if snap is not None and hard.term < snap.meta.term:
        found.append(
            f"{where}: hard state term {hard.term} is behind the snapshot's term "
            f"{snap.meta.term} (snapshot at index {snap.meta.index}): the term and vote "
            "were lost with the log that held them"
        )
    newest = max(p.entries, key=lambda e: e.term, default=None)
    if newest is not None and hard.term < newest.term:
        found.append(
            f"{where}: hard state term {hard.term} is behind entry {newest.index} of "
            f"term {newest.term}: the term and vote were lost or replaced by older ones"
        )
    last = p.entries[-1].index if p.entries else (snap.meta.index if snap else 0)
    if hard.commit > last:
        found.append(
            f"{where}: commit index {hard.commit} is beyond the last log index {last}: "
            "committed entries are missing from the end of the log"
        )
    return found


def load_checked(storage: FileStorage) -> Loaded:
    """``storage.load()`` plus the rules above; raises ``StorageCorrupt`` with one line
    (the first problem and ``RECOVERY``)."""
    try:
        loaded = storage.load()
    except StorageCorrupt as exc:
        raise StorageCorrupt(f"{exc}; {RECOVERY}") from None
    found = problems(loaded, storage.dir)
    if found:
        raise StorageCorrupt(f"{found[0]}; {RECOVERY}")
    return loaded


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    """What ``registry doctor`` found in one data directory."""

    data_dir: Path
    problems: tuple[str, ...]
    """Empty when the directory is healthy (a node would start on it)."""
    notes: tuple[str, ...] = ()
    """Things a start would repair (a torn tail), or why nothing could be read."""
    loaded: Loaded | None = None
    names: int = 0
    """Registered names in the committed state (snapshot + committed entries)."""
    error: str = ""
    """Why the directory could not be checked at all (missing, locked, unreadable)."""

    @property
    def healthy(self) -> bool:
        return not self.problems and not self.error

    @property
    def exit_code(self) -> int:
        """0 healthy, 2 damaged (a node would refuse to start), 1 not checked."""
        return 1 if self.error else 2 if self.problems else 0

    def lines(self) -> list[str]:
        out = [f"data directory: {self.data_dir}"]
        if self.loaded is not None:
            p = self.loaded.persisted
            hard, snap = p.hard_state, p.snapshot
            first = p.entries[0].index if p.entries else 0
            last = p.entries[-1].index if p.entries else (snap.meta.index if snap else 0)
            out += [
                f"names: {self.names}",
                f"term: {hard.term}",
                f"vote: {hard.vote or '-'}",
                f"commit: {hard.commit}",
                f"log: {len(p.entries)} entries, first {first or '-'}, last {last}, "
                f"{self.loaded.segments} segment(s)",
                "snapshot: "
                + (f"index {snap.meta.index}, term {snap.meta.term}" if snap else "none"),
                f"incarnation: {self.loaded.incarnation}",
            ]
        out += [f"note: {n}" for n in self.notes]
        out += [f"problem: {n}" for n in self.problems]
        if self.error:
            out.append(f"NOT CHECKED: {self.error}")
        elif self.problems:
            out.append(f"DAMAGED: the node will not start; {RECOVERY}")
        else:
            out.append("healthy")
        return out


def inspect(data_dir: Path) -> Report:
    """Run the start-up checks on ``data_dir`` without changing it (the node must be
    stopped: its lock is taken while reading)."""
    if not data_dir.is_dir():
        return Report(data_dir=data_dir, problems=(), error=f"{data_dir} is not a directory")
    try:
        storage = FileStorage(data_dir)
    except DataDirLocked as exc:
        return Report(data_dir=data_dir, problems=(), error=f"{exc}: stop the node first")
    except OSError as exc:
        return Report(data_dir=data_dir, problems=(), error=f"cannot open it: {exc}")
    try:
        loaded = storage.load(repair=False)
    except StorageCorrupt as exc:
        return Report(data_dir=data_dir, problems=(str(exc),))
    except OSError as exc:
        return Report(data_dir=data_dir, problems=(), error=f"cannot read it: {exc}")
    finally:
        storage.close()
    notes = []
    if loaded.repaired:
        notes.append(
            f"a start will cut a torn tail (a write a crash interrupted): {loaded.repaired}"
        )
    found = problems(loaded, data_dir)
    return Report(
        data_dir=data_dir,
        problems=tuple(found),
        notes=tuple(notes),
        loaded=loaded,
        names=_names(loaded.persisted),
    )


def _names(p: PersistedState) -> int:
    """Names registered once every committed entry is applied to the snapshot's state."""
    state = RegistryState.restore(p.snapshot.data) if p.snapshot else RegistryState()
    for entry in p.entries:
        if entry.index > p.hard_state.commit:
            break
        if entry.type is not EntryType.NORMAL or not entry.data:
            continue
        try:
            state.apply(entry.index, decode(entry.data))
        except InvalidCommand:
            continue  # the node answers such an entry with INVALID_ARGUMENT too
    return state.live_count()
