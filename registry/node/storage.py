"""Durable storage for one node's data directory: log, hard state, snapshot, incarnation.

The shell persists each ``ReplicaReady`` here *before* sending anything (etcd-io/raft's
order), so whatever ``persist`` returned from must survive a crash or a power cut.

Layout of ``data_dir``::

    LOCK                              flock'd while a FileStorage is open; holds its pid
    incarnation                       decimal text, replaced atomically
    snapshot-<index:020d>.snap        the newest snapshot (older ones are deleted)
    log-<seq:010d>-<first:020d>.seg   log segments, replayed in ``seq`` order

A segment is a run of records ``[u16 magic][u8 type][u32 length][u32 crc32][payload]``; the
crc covers the seven header bytes before it and the payload. Types: ENTRY (an ``Entry``),
HARDSTATE (last one wins), RESET (a leader's snapshot was installed: forget every entry) and
BATCH (``[u32 length]``: the first record of every write, giving the byte length of the
records that follow it in that write, so the write boundaries are visible on disk).

Theory of operation:

1. The log is append-only. Truncation on conflict is *logical*: replaying an ENTRY at index
   ``k`` drops every entry ≥ ``k`` first (Raft's own rule). Truncating files in place
   could lose a hard state record written after the conflicting entries, and a vote that
   goes backwards after a crash is a double vote.
2. One ``persist`` = one ``write`` of all its records + one fsync of the segment (plus one
   of the directory when the segment is new). Snapshots and the incarnation are small
   atomic files (temp file → fsync → rename → fsync dir), written before the log records
   of the same call, as the Ready contract orders them.
3. Deletions (old snapshots, compacted segments) happen only after that fsync, and replay
   accepts any subset of them having reached the disk: at a gap the entry list restarts,
   and ``load`` checks that the log still joins the snapshot. Before segments are deleted a
   HARDSTATE record is re-written into the current segment, so the hard state survives.
4. Recovery: only the newest write can be torn — its ``persist`` never returned, and the
   next write starts only after that fsync — and a power cut may keep any part of it
   (the later half without the earlier one, too). So a bad record in the *last* segment
   with no BATCH record after it is a torn tail: the segment is cut where that write
   began (the start of the BATCH the bad record lies in, or the bad record itself when it
   is where a BATCH should start) and the cut is reported. A BATCH after the damage
   means a later write began, so the damaged one had been synced: that, and a bad record
   in any other segment, is corruption: ``StorageCorrupt`` names the file and offset.
   Segments written before BATCH records existed keep the older rule: a bad record with
   no valid record anywhere after it is a torn tail, cut at that record.
5. A new segment is written as ``*.seg.tmp`` and renamed only once its first records are
   on disk, so a crash never leaves an empty or headless segment: a 0-byte segment, or
   one whose first record is bad, is damage. So is a hole in the log (entries missing
   between two segments, or between the snapshot and the first segment); segments
   wholly covered by the snapshot may be missing in any combination (rule 3).
6. Whenever a persist raises the term or changes the vote *and* writes entries or installs
   a snapshot, a HARDSTATE record with the new term and vote goes first (before the
   snapshot file, with its own fsync, for an install): a torn write can lose entries or
   a commit, but never leave an entry or a snapshot with a term above the stored one.
   ``registry.node.storage_check`` relies on that: a term behind the log is damage.
7. A persist that only moves the commit index (same term and vote, nothing else) writes
   nothing: that commit goes out with the next write, or at ``close``. So the commit on
   disk may lag, as etcd-io/raft allows (its MustSync ignores the commit): every entry
   is on disk before it is acknowledged, a restarted node learns the commit from the
   leader, and ``load`` never finds a commit beyond the log. It saves the second fsync
   of each write (entries, then the commit that acknowledges them), and rule 4 still
   holds: no write ever goes to disk without its fsync.

Segment names carry a sequence number because first indexes alone do not order them: a
truncation can take the log below the first index of the segment being written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from registry.core.errors import RegistryError
from registry.core.messages import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    PersistedState,
    Ready,
    Snapshot,
    SnapshotMeta,
)
from registry.node.faults import FsyncFault, SlowPersist

__all__ = ["DataDirLocked", "FileStorage", "Loaded", "StorageCorrupt", "StorageFailed"]


class DataDirLocked(RegistryError):
    """Another FileStorage (in this or another process) holds the data directory."""


class StorageCorrupt(RegistryError):
    """The data directory holds damage that is not a torn tail; the node must not start."""


class StorageFailed(RegistryError):
    """An earlier write or fsync failed, so what reached the disk is unknown. Restart the
    process: after a failed fsync even the page cache ``load`` reads may not match it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    persisted: PersistedState
    """Hard state, snapshot (or None), entries after the snapshot."""
    incarnation: int
    """Last persisted incarnation (0 on a fresh directory)."""
    repaired: str | None
    """A human-readable note if a torn tail was cut, else None."""
    hard_state_file: str = ""
    """The segment holding the hard state record that was loaded ("" if none)."""
    segments: int = 0
    """Log segments found."""


_MAGIC = 0xC351
_HEADER = struct.Struct("<HBII")  # magic, type, payload length, crc32
_MAGIC_BYTES = _HEADER.pack(_MAGIC, 0, 0, 0)[:2]
_ENTRY, _HARDSTATE, _RESET, _BATCH = 1, 2, 3, 4
_BATCH_BODY = struct.Struct("<I")  # byte length of the records after it in the same write
_BATCH_SIZE = _HEADER.size + _BATCH_BODY.size
_ENTRY_HEAD = struct.Struct("<QQB")  # term, index, entry type; data follows
_HARD_HEAD = struct.Struct("<QQ")  # term, commit; vote (utf-8) follows
_RESET_BODY = struct.Struct("<QQ")  # snapshot index, term
_SNAP_MAGIC = b"QRSNAP1\n"
_SNAP_HEAD = struct.Struct("<IQ")  # crc32 of the body, body length
_SNAP_META = struct.Struct("<QQII")  # index, term, voter count, learner count
_SEGMENT = re.compile(r"log-(\d{10})-(\d{20})\.seg")
_SNAPSHOT = re.compile(r"snapshot-(\d{20})\.snap")

# fdatasync covers an append (the size is metadata needed to read the data back) and skips
# the timestamps; platforms without it fall back to fsync.
_datasync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)


def _record(kind: int, payload: bytes) -> bytes:
    head = _HEADER.pack(_MAGIC, kind, len(payload), 0)[:7]
    crc = zlib.crc32(payload, zlib.crc32(head))
    return head + crc.to_bytes(4, "little") + payload


def _parse(buf: bytes, off: int) -> tuple[int, bytes, int] | None:
    """The record at ``off`` as (type, payload, next offset), or None if it is not valid."""
    start = off + _HEADER.size
    if start > len(buf):
        return None
    magic, kind, length, crc = _HEADER.unpack_from(buf, off)
    end = start + length
    if magic != _MAGIC or end > len(buf):
        return None
    payload = buf[start:end]
    if zlib.crc32(payload, zlib.crc32(buf[off : off + 7])) != crc:
        return None
    return kind, payload, end


def _next_valid(buf: bytes, off: int, kind: int | None = None) -> int:
    """Offset of the first valid record (of type ``kind``, if given) starting after
    ``off``, or -1: tells a torn tail from damage in the middle of the log (rule 4)."""
    pos = buf.find(_MAGIC_BYTES, off + 1)
    while pos != -1:
        rec = _parse(buf, pos)
        if rec is not None and kind in (None, rec[0]):
            return pos
        pos = buf.find(_MAGIC_BYTES, pos + 1)
    return -1


def _batched(data: bytes) -> bytes:
    """One write's records behind the BATCH record that marks where the write began."""
    return _record(_BATCH, _BATCH_BODY.pack(len(data))) + data


def _encode_entry(e: Entry) -> bytes:
    return _record(_ENTRY, _ENTRY_HEAD.pack(e.term, e.index, int(e.type)) + e.data)


def _decode_entry(payload: bytes) -> Entry:
    term, index, kind = _ENTRY_HEAD.unpack_from(payload)
    return Entry(term=term, index=index, type=EntryType(kind), data=payload[_ENTRY_HEAD.size :])


def _encode_hard(hs: HardState) -> bytes:
    return _record(_HARDSTATE, _HARD_HEAD.pack(hs.term, hs.commit) + hs.vote.encode())


def _decode_hard(payload: bytes) -> HardState:
    term, commit = _HARD_HEAD.unpack_from(payload)
    return HardState(term=term, commit=commit, vote=payload[_HARD_HEAD.size :].decode())


def _encode_snapshot(snap: Snapshot) -> bytes:
    meta = snap.meta
    voters, learners = sorted(meta.conf.voters), sorted(meta.conf.learners)
    parts = [_SNAP_META.pack(meta.index, meta.term, len(voters), len(learners))]
    for node in (*voters, *learners):
        raw = node.encode()
        parts += [len(raw).to_bytes(2, "little"), raw]
    body = b"".join([*parts, snap.data])
    return _SNAP_MAGIC + _SNAP_HEAD.pack(zlib.crc32(body), len(body)) + body


def _decode_snapshot(raw: bytes) -> Snapshot:
    """Raises ValueError (or struct.error) on any mismatch."""
    start = len(_SNAP_MAGIC) + _SNAP_HEAD.size
    if raw[: len(_SNAP_MAGIC)] != _SNAP_MAGIC:
        raise ValueError("bad magic")
    crc, length = _SNAP_HEAD.unpack_from(raw, len(_SNAP_MAGIC))
    body = raw[start:]
    if len(body) != length or zlib.crc32(body) != crc:
        raise ValueError("checksum or length mismatch")
    index, term, n_voters, n_learners = _SNAP_META.unpack_from(body)
    off, names = _SNAP_META.size, []
    for _ in range(n_voters + n_learners):
        size = int.from_bytes(body[off : off + 2], "little")
        names.append(body[off + 2 : off + 2 + size].decode())
        off += 2 + size
    conf = ConfState(voters=frozenset(names[:n_voters]), learners=frozenset(names[n_voters:]))
    return Snapshot(meta=SnapshotMeta(index=index, term=term, conf=conf), data=body[off:])


def _add(entries: list[Entry], e: Entry) -> int | None:
    """Replay one ENTRY: Raft's truncate-then-append. Outside the stored range (a deleted
    segment, or one whose deletion reached the disk and an older one's did not) the list
    restarts; ``load`` then checks that what remains joins the snapshot. Returns the last
    index before such a restart (None if the entry continued the list)."""
    if entries and entries[0].index < e.index <= entries[-1].index + 1:
        del entries[e.index - entries[0].index :]
        entries.append(e)
        return None
    before = entries[-1].index if entries else 0
    entries.clear()
    entries.append(e)
    return before


def _missing_segments(low: int, high: int) -> str:
    if low > high:
        return ""
    return f"segment {low} is missing" if low == high else f"segments {low}..{high} are missing"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _intact(path: Path, buf: bytes, last: bool) -> tuple[list[tuple[int, int, bytes]], int]:
    """The valid records of a segment as (offset, type, payload), and where they end:
    ``len(buf)``, or where a torn tail starts. Raises StorageCorrupt for other damage."""
    records: list[tuple[int, int, bytes]] = []
    off, batch = 0, (0, 0)  # where the newest write began, and where it ends (0: no BATCH)
    while off < len(buf):
        rec = _parse(buf, off)
        if rec is None:
            cut = _torn_at(path, buf, off, last, batch)
            return [r for r in records if r[0] < cut], cut
        kind, payload, nxt = rec
        if kind == _BATCH:
            if len(payload) != _BATCH_BODY.size:
                raise StorageCorrupt(f"{path}: bad record at offset {off}: short batch record")
            batch = (off, nxt + _BATCH_BODY.unpack(payload)[0])
        records.append((off, kind, payload))
        off = nxt
    return records, off


def _torn_at(path: Path, buf: bytes, off: int, last: bool, batch: tuple[int, int]) -> int:
    """Where to cut for the bad record at ``off`` if it is a torn tail (rule 4): the start
    of the write it belongs to. Raises StorageCorrupt if it is not a torn tail."""
    if not last:
        raise StorageCorrupt(
            f"{path}: bad record at offset {off} of {len(buf)} bytes in a segment that "
            "is not the last (only the last one can end in a torn write)"
        )
    start, end = batch
    if end:
        later = _next_valid(buf, off, _BATCH)
        if later != -1:
            raise StorageCorrupt(
                f"{path}: bad record at offset {off}; a later write begins at {later}, "
                "so the damaged one had been synced"
            )
        off = start if off < end else off  # inside the newest write: cut all of it
    elif (after := _next_valid(buf, off)) != -1:  # written before BATCH records existed
        raise StorageCorrupt(
            f"{path}: bad record at offset {off}; a valid record follows at {after}"
        )
    if off == 0:
        raise StorageCorrupt(
            f"{path}: no valid record at all before the damage (its first write was "
            "synced before it was named, so this is damage, not a torn write)"
        )
    return off


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where replay found a hole: the entry list restarted at ``first`` in ``path``."""

    path: Path
    before: int
    """The last index replayed before the hole (0: none)."""
    first: int
    gap: str
    """Segments missing by sequence number before ``path`` (a note; may be empty)."""


@dataclass(slots=True)
class _Segment:
    path: Path
    seq: int
    top: int
    """Highest entry index written to it that may still be live (0: none). Once a
    compaction reaches it, and the segment is not the one being written, it can go."""


class FileStorage:
    """One node's data directory. Not thread-safe: one caller at a time (the driver
    persists from a worker thread, but never two Readies at once)."""

    def __init__(
        self, data_dir: Path, *, fsync: bool = True, segment_bytes: int = 64 << 20
    ) -> None:
        self.dir = Path(data_dir)
        self._fsync = fsync
        self._segment_bytes = segment_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            by = f" by pid {holder}" if holder.isdigit() else ""
            raise DataDirLocked(f"data directory {self.dir} is locked{by}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd: int | None = fd
        self._loaded = False
        self._broken: OSError | None = None
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._size = 0
        self._hard = HardState()
        self._commit: HardState | None = None
        """A commit-only hard state not written yet (rule 7)."""
        self._snap_index = self._last = 0
        self._unnamed: Path | None = None
        """The temp file of a new segment until its first records are synced (rule 5)."""
        self._fsync_fault = FsyncFault.from_env()
        self._slow_persist = SlowPersist.from_env()
        self.on_sync: Callable[[float], None] | None = None
        """Observes how long each log ``fdatasync`` took, seconds (the fsync metric)."""

    def __enter__(self) -> FileStorage:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Write a pending commit (rule 7), release the segment and the lock; safe to
        call twice."""
        if self._commit is not None and self._broken is None and self._lock_fd is not None:
            with contextlib.suppress(OSError):  # a lagging commit is allowed (rule 7)
                self.persist(incarnation=None, ready=Ready(), compaction=None)
        self._close_segment()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    # -- load --------------------------------------------------------------------------

    def load(self, *, repair: bool = True) -> Loaded:
        """Read everything back, removing temp files and stale snapshots and cutting a
        torn tail. Raises StorageCorrupt for damage that a crash cannot explain.
        ``repair=False`` (``registry doctor``) changes nothing on disk; the result is
        what a repairing load would return, but ``persist`` must not follow it."""
        self._check_open()
        self._close_segment()
        self._repair = repair
        if repair:
            for tmp in self.dir.glob("*.tmp"):
                tmp.unlink()
        snapshot = self._load_snapshot()
        hard, entries, repaired, resumed, hard_file = self._replay()
        entries = self._join(entries, snapshot, resumed)
        self._hard = hard
        self._snap_index = snapshot.meta.index if snapshot else 0
        self._last = entries[-1].index if entries else self._snap_index
        self._loaded, self._broken = repair, None
        persisted = PersistedState(hard_state=hard, snapshot=snapshot, entries=tuple(entries))
        return Loaded(
            persisted=persisted,
            incarnation=self._load_incarnation(),
            repaired=repaired,
            hard_state_file=hard_file,
            segments=len(self._segments),
        )

    def _load_incarnation(self) -> int:
        path = self.dir / "incarnation"
        try:
            return int(path.read_text())
        except FileNotFoundError:
            return 0
        except ValueError:
            raise StorageCorrupt(f"{path}: not an integer") from None

    def _load_snapshot(self) -> Snapshot | None:
        found = self._listed(_SNAPSHOT)
        if not found:
            return None
        path = found[-1][1]
        try:
            snapshot = _decode_snapshot(path.read_bytes())
        except (ValueError, struct.error) as err:
            raise StorageCorrupt(f"{path}: damaged snapshot ({err})") from None
        for _, stale in found[:-1] if self._repair else ():
            stale.unlink()  # a crash came between writing the newest and deleting these
        return snapshot

    def _replay(self) -> tuple[HardState, list[Entry], str | None, _Resume | None, str]:
        found = self._listed(_SEGMENT)
        hard, entries, repaired, resumed = HardState(), list[Entry](), None, None
        hard_file, prev_seq = "", 0
        self._segments = []
        for i, (seq, path) in enumerate(found):
            buf, top, last = path.read_bytes(), 0, i == len(found) - 1
            if not buf:
                raise StorageCorrupt(
                    f"{path}: empty segment (0 bytes); segments are named only once their "
                    "first records are on disk, so this one was emptied or replaced"
                )
            gap = _missing_segments(prev_seq + 1, seq - 1)
            prev_seq = seq
            records, end = _intact(path, buf, last)
            if end < len(buf):
                repaired = f"{path.name}: cut a torn tail of {len(buf) - end} bytes at {end}"
                if self._repair:
                    self._cut(path, end)
            for off, kind, payload in records:
                try:
                    if kind == _ENTRY:
                        entry = _decode_entry(payload)
                        before = _add(entries, entry)
                        if before is not None:
                            resumed = _Resume(path=path, before=before, first=entry.index, gap=gap)
                        top = max(top, entry.index)
                    elif kind == _HARDSTATE:
                        hard, hard_file = _decode_hard(payload), path.name
                    elif kind == _RESET:
                        entries.clear()
                        resumed = None
                        for seg in self._segments:
                            seg.top = 0  # nothing before a RESET is live
                        top = _RESET_BODY.unpack(payload)[0]
                    elif kind != _BATCH:  # a BATCH only marks where a write began
                        raise ValueError(f"unknown record type {kind}")
                except (ValueError, struct.error) as err:
                    raise StorageCorrupt(f"{path}: bad record at offset {off}: {err}") from None
            gap = ""
            self._segments.append(_Segment(path=path, seq=seq, top=top))
        return hard, entries, repaired, resumed, hard_file

    def _listed(self, pattern: re.Pattern[str]) -> list[tuple[int, Path]]:
        """Files named by ``pattern``, in the order of the number in its first group."""
        return sorted(
            (int(m[1]), p) for p in self.dir.iterdir() if (m := pattern.fullmatch(p.name))
        )

    def _cut(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _join(
        entries: list[Entry], snapshot: Snapshot | None, resumed: _Resume | None
    ) -> list[Entry]:
        """The entries after the snapshot, checking that nothing between them is missing."""
        if not entries:
            return entries
        first, at = entries[0].index, snapshot.meta.index if snapshot else 0
        if first > at + 1:
            where = f"the snapshot at {at}" if snapshot else "index 1"
            missing = f"entries {at + 1}..{first - 1} are missing"
            if resumed is not None and resumed.first == first:
                missing = f"entries {max(resumed.before, at) + 1}..{first - 1} are missing"
                gap = f" ({resumed.gap})" if resumed.gap else ""
                after = f"resumes at index {first} after index {resumed.before}"
                if not resumed.before:
                    after = f"starts at index {first}"
                raise StorageCorrupt(
                    f"{resumed.path}: the log {after}{gap}; {missing} (after {where})"
                )
            raise StorageCorrupt(f"the log starts at {first}, after {where}: {missing}")
        if snapshot is None or first == at + 1:
            return entries
        if entries[-1].index < at or entries[at - first].term != snapshot.meta.term:
            # A crash interrupted installing a leader's snapshot: our log conflicts with a
            # committed snapshot, so none of it was committed.
            return []
        return entries[at - first + 1 :]

    # -- persist -----------------------------------------------------------------------

    def persist(
        self, *, incarnation: int | None, ready: Ready, compaction: Snapshot | None
    ) -> None:
        """Make one ReplicaReady durable (see the module docstring for the order); returns
        only once it is on stable storage. Cheap when there is nothing to persist."""
        if self._slow_persist is not None:
            self._slow_persist.check()
        if incarnation is None and compaction is None and not ready.must_sync and not self._commit:
            return
        self._check_open()
        if self._broken is not None:
            raise StorageFailed(f"an earlier write failed ({self._broken}); restart the node")
        if not self._loaded:
            self.load()
        hs = ready.hard_state
        if (
            incarnation is None
            and compaction is None
            and not ready.entries
            and ready.snapshot is None
            and hs is not None
            and (hs.term, hs.vote) == (self._hard.term, self._hard.vote)
        ):
            self._commit = hs  # rule 7: only the commit moved; it goes with the next write
            return
        if hs is None and self._commit is not None:
            ready = replace(ready, hard_state=self._commit)
        self._commit = None
        self._validate(ready, compaction)
        try:
            self._persist(incarnation, ready, compaction)
        except OSError as err:
            # A failed fsync may have dropped the dirty pages: appending after it could
            # leave a hole in the middle of the log. Stop until load() re-reads the disk.
            self._broken = err
            if err.filename is None and self._segments:
                err.filename = str(self._unnamed or self._segments[-1].path)
            raise

    def _validate(self, ready: Ready, compaction: Snapshot | None) -> None:
        """Refuse writes that would leave the log unloadable (a core bug, caught early)."""
        snap, last = self._snap_index, self._last
        if ready.snapshot is not None:
            snap = last = ready.snapshot.meta.index
        if ready.entries:
            first = ready.entries[0].index
            if not snap < first <= last + 1:
                raise ValueError(f"append at {first} outside ({snap}, {last + 1}]")
            last = ready.entries[-1].index
        if compaction is not None and not snap < compaction.meta.index <= last:
            raise ValueError(f"compaction to {compaction.meta.index} outside ({snap}, {last}]")

    def _persist(self, incarnation: int | None, ready: Ready, compaction: Snapshot | None) -> None:
        if incarnation is not None:
            self._write_atomic("incarnation", f"{incarnation}\n".encode())
        records: list[bytes] = []
        hs = ready.hard_state
        if (
            hs is not None
            and (ready.entries or ready.snapshot)
            and (hs.term, hs.vote) != (self._hard.term, self._hard.vote)
        ):
            # Rule 6: the new term first, with the commit already on disk.
            early = _encode_hard(replace(hs, commit=self._hard.commit))
            if ready.snapshot is not None:
                self._write_records(early, self._open_segment(len(early), self._last + 1))
            else:
                records.append(early)
            self._hard = replace(hs, commit=self._hard.commit)
        if ready.snapshot is not None:
            meta = ready.snapshot.meta
            self._save_snapshot(ready.snapshot)
            records.append(_record(_RESET, _RESET_BODY.pack(meta.index, meta.term)))
            self._snap_index = self._last = meta.index
            for seg in self._segments:
                seg.top = 0  # nothing before the RESET record is live
        first = ready.entries[0].index if ready.entries else self._last + 1
        records += [_encode_entry(e) for e in ready.entries]
        self._last = ready.entries[-1].index if ready.entries else self._last
        if hs is not None:
            self._hard = hs
            records.append(_encode_hard(hs))
        if compaction is not None:
            self._save_snapshot(compaction)
            self._snap_index = compaction.meta.index
        data = b"".join(records)
        new_file = bool(data) and self._open_segment(len(data), first)
        if ready.entries or ready.snapshot:  # after a RESET, its index stands for the rest
            self._segments[-1].top = max(self._segments[-1].top, self._last)
        doomed = self._doomed() if ready.snapshot or compaction else []
        if doomed and hs is None:
            hard = _encode_hard(self._hard)  # the doomed segments may hold the latest one
            if not data:  # else the segment is open already: rolling now would misplace top
                new_file = self._open_segment(len(hard), first)
            data += hard
        if not data:
            return  # a compaction that frees no segment: its snapshot file is durable
        self._write_records(data, new_file)
        for seg in doomed:
            seg.path.unlink(missing_ok=True)
        self._segments = [s for s in self._segments if s not in doomed]

    def _write_records(self, data: bytes, new_file: bool) -> None:
        """Append ``data`` to the open segment and make it durable; a new segment gets
        its name only now (rule 5)."""
        assert self._fd is not None
        data = _batched(data)
        _write_all(self._fd, data)
        self._size += len(data)
        if self._fsync:
            if self._fsync_fault is not None:
                self._fsync_fault.check(self._unnamed or self._segments[-1].path)
            began = time.monotonic()
            _datasync(self._fd)
            if self.on_sync is not None:
                self.on_sync(time.monotonic() - began)
        if new_file and self._unnamed is not None:
            os.rename(self._unnamed, self._segments[-1].path)
            self._unnamed = None
            if self._fsync:
                self._sync_dir()

    def _doomed(self) -> list[_Segment]:
        """The oldest segments, not the current one, holding only compacted entries."""
        doomed: list[_Segment] = []
        for seg in self._segments[:-1]:
            if seg.top > self._snap_index:
                break
            doomed.append(seg)
        return doomed

    def _open_segment(self, incoming: int, first: int) -> bool:
        """Make ``self._fd`` the segment to append to, rolling to a new one (named after
        ``first``, the first index written to it) when ``incoming`` bytes would overflow
        it. True when a new file was created: its directory entry needs an fsync too."""
        if self._fd is None and self._segments:
            self._fd = os.open(self._segments[-1].path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size
        if self._fd is not None and not (
            self._size and self._size + _BATCH_SIZE + incoming > self._segment_bytes
        ):
            return False
        self._close_segment()
        seq = self._segments[-1].seq + 1 if self._segments else 1
        path = self.dir / f"log-{seq:010d}-{first:020d}.seg"
        self._unnamed = path.with_name(path.name + ".tmp")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND
        self._fd = os.open(self._unnamed, flags, 0o644)
        self._size = 0
        self._segments.append(_Segment(path=path, seq=seq, top=0))
        return True

    def _save_snapshot(self, snap: Snapshot) -> None:
        name = f"snapshot-{snap.meta.index:020d}.snap"
        self._write_atomic(name, _encode_snapshot(snap))
        for path in self.dir.glob("snapshot-*.snap"):
            if path.name != name:
                path.unlink()  # the new one is durable: the old one is never needed again

    def _write_atomic(self, name: str, data: bytes) -> None:
        """Replace ``name`` so that a crash leaves either the old or the new content."""
        tmp = self.dir / f"{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            if self._fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.dir / name)
        if self._fsync:
            self._sync_dir()

    def _sync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close_segment(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _check_open(self) -> None:
        if self._lock_fd is None:
            raise RuntimeError(f"FileStorage({self.dir}) is closed")
