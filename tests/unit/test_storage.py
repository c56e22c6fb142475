"""FileStorage (registry/node/storage.py): round trips, truncation, snapshots, compaction,
torn tails vs. corruption, the data-directory lock, a SIGKILL crash test in a subprocess
and a seeded fuzz test against an in-memory model."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

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
from registry.node import storage as storage_mod
from registry.node.storage import (
    DataDirLocked,
    FileStorage,
    Loaded,
    StorageCorrupt,
    StorageFailed,
)

ROOT = Path(__file__).resolve().parents[2]
CONF = ConfState(voters=frozenset({"n1", "n2", "n3"}), learners=frozenset({"n4"}))


def ent(index: int, term: int = 1, data: bytes | None = None) -> Entry:
    return Entry(term=term, index=index, data=f"e{index}".encode() if data is None else data)


def ents(first: int, last: int, term: int = 1) -> tuple[Entry, ...]:
    return tuple(ent(i, term) for i in range(first, last + 1))


def snap(index: int, term: int = 1, data: bytes = b"state") -> Snapshot:
    return Snapshot(meta=SnapshotMeta(index=index, term=term, conf=CONF), data=data)


def append(st: FileStorage, entries: tuple[Entry, ...], hs: HardState | None = None) -> None:
    st.persist(incarnation=None, ready=Ready(entries=entries, hard_state=hs), compaction=None)


def reopen(
    path: Path, st: FileStorage | None = None, segment_bytes: int = 64 << 20
) -> tuple[FileStorage, Loaded]:
    """Close ``st`` (if any) and open ``path`` again; fsync is off where crashes are
    simulated by editing files, as it changes nothing a test here can observe."""
    if st is not None:
        st.close()
    st = FileStorage(path, fsync=False, segment_bytes=segment_bytes)
    return st, st.load()


def segments(path: Path) -> list[Path]:
    return sorted(path.glob("log-*.seg"))


# -- round trips ---------------------------------------------------------------------------


def test_fresh_dir_loads_empty(tmp_path: Path) -> None:
    st = FileStorage(tmp_path / "new" / "dir")
    assert st.load() == Loaded(persisted=PersistedState(), incarnation=0, repaired=None)
    st.close()


def test_round_trip_through_reopen(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    st.load()
    st.persist(incarnation=3, ready=Ready(), compaction=None)
    conf_change = Entry(term=2, index=5, type=EntryType.CONF_CHANGE, data=b"\x00\xff")
    hs = HardState(term=2, vote="n1", commit=4)
    append(st, (*ents(1, 4), conf_change), hs)
    st.persist(incarnation=None, ready=Ready(), compaction=snap(2, data=bytes(range(256))))
    st.close()
    st, loaded = reopen(tmp_path, st)
    assert loaded.incarnation == 3
    assert loaded.repaired is None
    assert loaded.persisted == PersistedState(
        hard_state=hs, snapshot=snap(2, data=bytes(range(256))), entries=(*ents(3, 4), conf_change)
    )
    st.close()


def test_nothing_to_persist_costs_no_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[int] = []
    monkeypatch.setattr(storage_mod, "_datasync", syncs.append)
    monkeypatch.setattr(os, "fsync", syncs.append)
    st = FileStorage(tmp_path)
    st.load()
    st.persist(incarnation=None, ready=Ready(committed=ents(1, 1)), compaction=None)
    assert syncs == [] and segments(tmp_path) == []
    append(st, ents(1, 1), HardState(term=1, commit=1))
    assert len(syncs) == 2  # the record write, then the directory of the new segment
    append(st, ents(2, 2), HardState(term=1, commit=2))
    assert len(syncs) == 3  # one fsync per persist once the segment exists
    st.close()


def test_writes_that_would_break_the_log_are_refused(tmp_path: Path) -> None:
    st, _ = reopen(tmp_path)
    append(st, ents(1, 3))
    with pytest.raises(ValueError, match="append at 5"):
        append(st, ents(5, 5))
    with pytest.raises(ValueError, match="compaction to 4"):
        st.persist(incarnation=None, ready=Ready(), compaction=snap(4))
    st.close()


# -- truncation and snapshots -------------------------------------------------------------


def test_truncation_on_conflict(tmp_path: Path) -> None:
    st, _ = reopen(tmp_path)
    append(st, ents(1, 10))
    append(st, ents(6, 8, term=2))
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == (*ents(1, 5), *ents(6, 8, term=2))
    append(st, ents(9, 9, term=2))
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == (*ents(1, 5), *ents(6, 9, term=2))
    st.close()


def test_truncation_below_the_segment_being_written(tmp_path: Path) -> None:
    st, _ = reopen(tmp_path, segment_bytes=64)
    for i in range(1, 11):
        append(st, ents(i, i))
    append(st, ents(3, 4, term=2))
    for i in range(5, 8):
        append(st, ents(i, i, term=2))
    st, loaded = reopen(tmp_path, st, segment_bytes=64)
    assert loaded.persisted.entries == (*ents(1, 2), *ents(3, 7, term=2))
    st.close()


@pytest.mark.parametrize("at", [5, 20])
def test_install_snapshot_drops_all_entries(tmp_path: Path, at: int) -> None:
    st, _ = reopen(tmp_path, segment_bytes=64)
    for i in range(1, 11):
        append(st, ents(i, i), HardState(term=1, commit=i - 1))
    assert len(segments(tmp_path)) > 2
    hs = HardState(term=3, commit=at)
    st.persist(incarnation=None, ready=Ready(snapshot=snap(at, 3), hard_state=hs), compaction=None)
    assert len(segments(tmp_path)) == 1  # everything before the install is gone
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted == PersistedState(hard_state=hs, snapshot=snap(at, 3), entries=())
    append(st, ents(at + 1, at + 2, term=3))
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == ents(at + 1, at + 2, term=3)
    assert [p.name for p in tmp_path.glob("*.snap")] == [f"snapshot-{at:020d}.snap"]
    st.close()


def test_install_snapshot_drops_entries_even_when_they_match(tmp_path: Path) -> None:
    """Raft would keep a matching suffix; the core asked for everything to go, and after
    the install nothing but the RESET record in the same segment says so."""
    st, _ = reopen(tmp_path)
    append(st, ents(1, 10))
    st.persist(incarnation=None, ready=Ready(snapshot=snap(5)), compaction=None)
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.snapshot == snap(5) and loaded.persisted.entries == ()
    assert len(segments(tmp_path)) == 1
    st.close()


def test_compaction_deletes_old_segments_and_keeps_hard_state(tmp_path: Path) -> None:
    st, _ = reopen(tmp_path, segment_bytes=100)
    hs = HardState(term=1, vote="n2", commit=1)
    append(st, ents(1, 1), hs)  # the only HARDSTATE record, in the first segment
    for i in range(2, 31):
        append(st, ents(i, i))
    before = segments(tmp_path)
    st.persist(incarnation=None, ready=Ready(), compaction=snap(25))
    after = segments(tmp_path)
    assert len(after) < len(before) and after[-1] == before[-1]
    assert before[0] not in after
    st, loaded = reopen(tmp_path, st, segment_bytes=100)
    assert loaded.persisted == PersistedState(
        hard_state=hs, snapshot=snap(25), entries=ents(26, 30)
    )
    st.persist(incarnation=None, ready=Ready(), compaction=snap(30))
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted == PersistedState(hard_state=hs, snapshot=snap(30), entries=())
    st.close()


def test_deletions_that_did_not_all_reach_the_disk(tmp_path: Path) -> None:
    """Unlinks may reach the disk in any order: an older segment may reappear."""
    st, _ = reopen(tmp_path, segment_bytes=100)
    for i in range(1, 21):
        append(st, ents(i, i), HardState(term=1, commit=i))
    saved = {p: p.read_bytes() for p in segments(tmp_path)}
    st.persist(incarnation=None, ready=Ready(), compaction=snap(15))
    oldest = min(saved)
    assert not oldest.exists()
    oldest.write_bytes(saved[oldest])
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == ents(16, 20)
    assert loaded.persisted.hard_state.commit == 20
    st.close()


@pytest.mark.parametrize("term", [1, 2])
def test_crash_while_installing_a_snapshot(
    tmp_path: Path, term: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot file is durable but the RESET record is not: entries that conflict
    with the snapshot are dropped, a matching suffix is kept (Raft's rule)."""
    st, _ = reopen(tmp_path)
    append(st, ents(1, 10))

    def fail(self: FileStorage, incoming: int, first: int) -> bool:
        raise OSError("disk on fire")

    monkeypatch.setattr(FileStorage, "_open_segment", fail)
    with pytest.raises(OSError):
        st.persist(incarnation=None, ready=Ready(snapshot=snap(5, term)), compaction=None)
    with pytest.raises(StorageFailed):
        append(st, ents(6, 6))
    monkeypatch.undo()
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.snapshot == snap(5, term)
    assert loaded.persisted.entries == (ents(6, 10) if term == 1 else ())
    st.close()


# -- torn tails and corruption ------------------------------------------------------------


def three_records(path: Path) -> Path:
    st, _ = reopen(path)
    for i in range(1, 4):
        append(st, ents(i, i))
    st.close()
    [seg] = segments(path)
    return seg


@pytest.mark.parametrize("cut", [1, 5, 12, 15])
def test_torn_tail_is_cut(tmp_path: Path, cut: int) -> None:
    seg = three_records(tmp_path)
    size = seg.stat().st_size
    os.truncate(seg, size - cut)
    st, loaded = reopen(tmp_path)
    assert loaded.persisted.entries == ents(1, 2)
    assert loaded.repaired is not None and seg.name in loaded.repaired
    assert seg.stat().st_size == size * 2 // 3
    append(st, ents(3, 4, term=2))
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == (*ents(1, 2), *ents(3, 4, term=2))
    assert loaded.repaired is None
    st.close()


@pytest.mark.parametrize("offset", [0, 3, 5, 9, 11, 14])
def test_flipped_byte_in_last_record_is_a_torn_tail(tmp_path: Path, offset: int) -> None:
    seg = three_records(tmp_path)
    raw = bytearray(seg.read_bytes())
    raw[len(raw) * 2 // 3 + offset] ^= 0x40
    seg.write_bytes(raw)
    st, loaded = reopen(tmp_path)
    assert loaded.persisted.entries == ents(1, 2)
    assert loaded.repaired is not None
    append(st, ents(3, 3))
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == ents(1, 3)
    st.close()


def test_zero_filled_tail_is_a_torn_tail(tmp_path: Path) -> None:
    seg = three_records(tmp_path)
    with seg.open("ab") as f:
        f.write(bytes(4096))
    st, loaded = reopen(tmp_path)
    assert loaded.persisted.entries == ents(1, 3) and loaded.repaired is not None
    st.close()


@pytest.mark.parametrize("offset", [0, 3, 14])
def test_bad_record_in_the_middle_is_corruption(tmp_path: Path, offset: int) -> None:
    seg = three_records(tmp_path)
    raw = bytearray(seg.read_bytes())
    raw[len(raw) // 3 + offset] ^= 0x40
    seg.write_bytes(raw)
    st = FileStorage(tmp_path, fsync=False)
    with pytest.raises(StorageCorrupt, match=rf"{seg.name}: bad record at offset {len(raw) // 3}"):
        st.load()
    st.close()
    assert seg.read_bytes() == raw  # nothing was cut


def test_bad_record_at_the_end_of_an_older_segment_is_corruption(tmp_path: Path) -> None:
    st, _ = reopen(tmp_path, segment_bytes=40)
    for i in range(1, 5):
        append(st, ents(i, i))
    st.close()
    first = segments(tmp_path)[0]
    os.truncate(first, first.stat().st_size - 1)
    with pytest.raises(StorageCorrupt, match=first.name):
        reopen(tmp_path)


def three_writes(path: Path) -> tuple[Path, list[int]]:
    """Three persists of two entries each; returns the segment and where each write began."""
    st, _ = reopen(path)
    starts = []
    for i in (1, 3, 5):
        starts.append(segments(path)[0].stat().st_size if segments(path) else 0)
        append(st, ents(i, i + 1), HardState(term=1, commit=i))
    st.close()
    [seg] = segments(path)
    return seg, starts


def test_a_write_whose_later_half_alone_reached_the_disk_is_a_torn_tail(tmp_path: Path) -> None:
    # A power cut may keep the later pages of the last write and not the earlier ones:
    # valid records follow the damage, but no later write does (storage rule 4).
    seg, starts = three_writes(tmp_path)
    raw = bytearray(seg.read_bytes())
    half = (len(raw) - starts[2]) // 2
    raw[starts[2] : starts[2] + half] = bytes(half)
    seg.write_bytes(raw)
    st, loaded = reopen(tmp_path)
    assert loaded.persisted.entries == ents(1, 4)
    assert loaded.persisted.hard_state == HardState(term=1, commit=3)
    assert (
        loaded.repaired
        == f"{seg.name}: cut a torn tail of {len(raw) - starts[2]} bytes at {starts[2]}"
    )
    append(st, ents(5, 5, term=2))
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == (*ents(1, 4), *ents(5, 5, term=2))
    assert loaded.repaired is None
    st.close()


def test_damage_inside_the_last_write_cuts_all_of_that_write(tmp_path: Path) -> None:
    # Its first entry is intact, but the write never returned: it goes as a whole.
    seg, starts = three_writes(tmp_path)
    raw = bytearray(seg.read_bytes())
    raw[-1] ^= 0x40  # the hard state record that ends the third write
    seg.write_bytes(raw)
    st, loaded = reopen(tmp_path)
    assert loaded.persisted.entries == ents(1, 4)
    assert loaded.persisted.hard_state == HardState(term=1, commit=3)
    assert seg.stat().st_size == starts[2]
    st.close()


@pytest.mark.parametrize("damage", ["zeroed", "flipped"])
def test_damage_followed_by_a_later_write_is_corruption(tmp_path: Path, damage: str) -> None:
    # The second write's later half is gone but the third write began after it: the
    # second one's fsync had returned, so this is lost acknowledged data, not a torn tail.
    seg, starts = three_writes(tmp_path)
    raw = bytearray(seg.read_bytes())
    if damage == "zeroed":
        raw[starts[1] : starts[1] + 20] = bytes(20)
    else:
        raw[starts[2] - 1] ^= 0x40
    seg.write_bytes(raw)
    st = FileStorage(tmp_path, fsync=False)
    with pytest.raises(
        StorageCorrupt, match=rf"bad record at offset \d+; a later write begins at {starts[2]}"
    ):
        st.load()
    st.close()
    assert seg.read_bytes() == raw  # nothing was cut


def test_a_segment_written_before_batch_records_keeps_the_older_rule(tmp_path: Path) -> None:
    old = [storage_mod._encode_entry(e) for e in ents(1, 3)]
    seg = tmp_path / "log-0000000001-00000000000000000001.seg"
    seg.write_bytes(b"".join(old)[:-3])  # a torn tail in the old format
    st, loaded = reopen(tmp_path)
    assert loaded.persisted.entries == ents(1, 2) and loaded.repaired is not None
    append(st, ents(3, 4, term=2))  # appended in the new format
    st, loaded = reopen(tmp_path, st)
    assert loaded.persisted.entries == (*ents(1, 2), *ents(3, 4, term=2))
    st.close()
    seg.write_bytes(bytes(len(old[0])) + b"".join(old[1:]))  # old format, damage mid-log
    with pytest.raises(
        StorageCorrupt, match=rf"bad record at offset 0; a valid record follows at {len(old[0])}"
    ):
        reopen(tmp_path)


def test_damaged_snapshot_is_corruption(tmp_path: Path) -> None:
    st, _ = reopen(tmp_path)
    append(st, ents(1, 3))
    st.persist(incarnation=None, ready=Ready(), compaction=snap(2, data=b"x" * 100))
    st.close()
    [path] = tmp_path.glob("*.snap")
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(raw)
    with pytest.raises(StorageCorrupt, match=path.name):
        reopen(tmp_path)


def test_leftover_temp_files_and_old_snapshots_are_removed(tmp_path: Path) -> None:
    st, _ = reopen(tmp_path)
    append(st, ents(1, 3))
    st.persist(incarnation=7, ready=Ready(), compaction=snap(2))
    st.close()
    (tmp_path / "incarnation.tmp").write_bytes(b"99 garbage")
    (tmp_path / f"snapshot-{9:020d}.snap.tmp").write_bytes(b"half a snapshot")
    shutil.copy(tmp_path / f"snapshot-{2:020d}.snap", tmp_path / f"snapshot-{1:020d}.snap")
    st, loaded = reopen(tmp_path)
    assert loaded.incarnation == 7 and loaded.persisted.snapshot == snap(2)
    assert not list(tmp_path.glob("*.tmp"))
    assert [p.name for p in tmp_path.glob("*.snap")] == [f"snapshot-{2:020d}.snap"]
    st.close()


# -- the lock -----------------------------------------------------------------------------


def test_second_storage_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    st = FileStorage(tmp_path)
    with pytest.raises(DataDirLocked, match=rf"{re.escape(str(tmp_path))}.*pid {os.getpid()}"):
        FileStorage(tmp_path)
    st.close()
    st.close()  # safe twice
    with pytest.raises(RuntimeError, match="closed"):
        st.load()
    with FileStorage(tmp_path) as again:
        assert again.load().incarnation == 0


# -- crash test ---------------------------------------------------------------------------

CHILD = """
import sys
from pathlib import Path
from registry.core.messages import Entry, HardState, Ready, Snapshot, SnapshotMeta, ConfState
from registry.node.storage import FileStorage

path, seed = Path(sys.argv[1]), int(sys.argv[2])
st = FileStorage(path, segment_bytes=4 << 20)
p = st.load().persisted
last = p.entries[-1].index if p.entries else (p.snapshot.meta.index if p.snapshot else 0)
snap = p.snapshot.meta.index if p.snapshot else 0
print("loaded", last, flush=True)
for n in range(1, 400):
    big = n % 2 == 0
    count = 12 if big else 1 + n % 3
    entries = tuple(
        Entry(term=1, index=i, data=str(i).encode() * (60000 if big else 20))
        for i in range(last + 1, last + 1 + count)
    )
    last += count
    compaction = None
    if n % 10 == 0 and last - 5 > snap:
        snap = last - 5
        meta = SnapshotMeta(index=snap, term=1, conf=ConfState(voters=frozenset({"n1"})))
        compaction = Snapshot(meta=meta, data=b"snap%d" % snap)
    hs = HardState(term=1, vote="n1", commit=last - 1)
    inc = seed if n == 1 else None
    st.persist(incarnation=inc, ready=Ready(entries=entries, hard_state=hs), compaction=compaction)
    print("ack", last, flush=True)
"""


def crash_child(path: Path, incarnation: int, rng: random.Random) -> tuple[int, int]:
    """Run CHILD on ``path`` and SIGKILL it after a random number of acknowledged persists
    plus a random delay (0–30 ms, so the kill lands anywhere in a persist: encoding,
    ``write``, fsync). Returns (the index the child loaded, the last acknowledged index)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(incarnation)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    watchdog = threading.Timer(60, proc.kill)  # bounds the test if the child hangs
    watchdog.start()
    loaded = acked = -1
    target, delay = rng.randint(1, 30), rng.choice([0, rng.uniform(0, 0.03)])
    try:
        for seen, line in enumerate(proc.stdout):
            word, index = line.split()
            if word == "loaded":
                loaded = int(index)
            else:
                acked = int(index)
            if seen == target:
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=delay)
        os.kill(proc.pid, signal.SIGKILL)
        for line in proc.stdout:  # acks printed before the kill count too
            parts = line.split()
            # A line SIGKILL cut short was not fully acknowledged: ignore it.
            if line.endswith("\n") and len(parts) == 2 and parts[1].isdigit():
                acked = int(parts[1])
    finally:
        watchdog.cancel()
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the child ended before it was killed"
    return loaded, acked


def test_sigkill_at_random_points_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(2024)
    acked, repairs, rounds = 0, 0, 10
    for incarnation in range(1, rounds + 1):
        loaded_at, acked_now = crash_child(tmp_path, incarnation, rng)
        assert loaded_at >= acked  # what the child found on disk, before it appended more
        acked = max(acked, acked_now)
        st = FileStorage(tmp_path, fsync=False)
        loaded = st.load()
        st.close()
        repairs += loaded.repaired is not None
        p = loaded.persisted
        start = p.snapshot.meta.index if p.snapshot else 0
        if p.snapshot is not None:
            assert p.snapshot.data == b"snap%d" % start
        indexes = [e.index for e in p.entries]
        assert indexes == list(range(start + 1, start + 1 + len(indexes)))
        assert max(indexes, default=start) >= acked  # every acknowledged entry survived
        for e in p.entries:
            assert e.data in (str(e.index).encode() * 20, str(e.index).encode() * 60000)
        assert p.hard_state.commit >= acked - 1
        assert loaded.incarnation in (incarnation - 1, incarnation)
    print(f"torn tails repaired in {repairs} of {rounds} rounds")


# -- fuzz against a model -----------------------------------------------------------------


class Model:
    """What a correct storage holds: the sim's RaftDisk semantics, in a few lines."""

    def __init__(self) -> None:
        self.hard = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.incarnation = 0

    @property
    def offset(self) -> int:
        return self.snapshot.meta.index if self.snapshot else 0

    @property
    def last(self) -> int:
        return self.entries[-1].index if self.entries else self.offset

    def state(self) -> PersistedState:
        return PersistedState(
            hard_state=self.hard, snapshot=self.snapshot, entries=tuple(self.entries)
        )


def random_step(
    rng: random.Random, m: Model, term: int
) -> tuple[int | None, Ready, Snapshot | None]:
    """One random persist call, applied to the model as well."""
    incarnation = None
    if rng.random() < 0.05:
        m.incarnation = incarnation = m.incarnation + 1
    installed = None
    if rng.random() < 0.05:
        at = rng.randint(m.offset + 1, m.last + 10)
        m.snapshot = installed = snap(at, term, rng.randbytes(rng.randint(0, 64)))
        m.entries = []
    entries: tuple[Entry, ...] = ()
    if rng.random() < 0.7:
        first = rng.choice([m.last + 1, m.last + 1, rng.randint(m.offset + 1, m.last + 1)])
        count = rng.randint(1, 5)
        entries = tuple(
            ent(i, term, rng.randbytes(rng.randint(0, 40))) for i in range(first, first + count)
        )
        del m.entries[first - m.offset - 1 :]
        m.entries.extend(entries)
    hs = None
    if rng.random() < 0.5:
        m.hard = hs = HardState(term=term, vote=rng.choice(["", "n1", "n2"]), commit=m.last)
    compaction = None
    if m.entries and rng.random() < 0.15:
        at = rng.randint(m.offset + 1, m.last)
        term_at = m.entries[at - m.offset - 1].term
        compaction = Snapshot(
            meta=SnapshotMeta(index=at, term=term_at, conf=CONF), data=b"c%d" % at
        )
        m.entries = m.entries[at - m.offset :]
        m.snapshot = compaction
    return incarnation, Ready(snapshot=installed, entries=entries, hard_state=hs), compaction


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_against_model(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    model, term = Model(), 1
    st, _ = reopen(tmp_path, segment_bytes=rng.choice([64, 300, 2000]))
    for step in range(400):
        if rng.random() < 0.1:
            term += 1
        incarnation, ready, compaction = random_step(rng, model, term)
        st.persist(incarnation=incarnation, ready=ready, compaction=compaction)
        if rng.random() < 0.1 or step == 399:
            st, loaded = reopen(tmp_path, st, segment_bytes=rng.choice([64, 300, 2000]))
            assert loaded.persisted == model.state(), f"seed {seed} step {step}"
            assert loaded.incarnation == model.incarnation
            assert loaded.repaired is None
    assert len(segments(tmp_path)) < 60  # compaction keeps deleting old segments
    st.close()


def _crash_copy(src: Path, dst: Path) -> Loaded:
    """What a crash right now would leave: the files as they are, loaded afresh."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("LOCK"))
    with FileStorage(dst, fsync=False) as again:
        return again.load()


def test_a_commit_only_persist_writes_nothing_and_goes_with_the_next_write(
    tmp_path: Path,
) -> None:
    """Rule 7: no second fsync for the commit that acknowledges entries; the commit on
    disk may lag, never the entries, the term or the vote."""
    data = tmp_path / "data"
    entries = tuple(Entry(term=2, index=i, data=b"x") for i in (1, 2, 3))
    with FileStorage(data) as st:
        st.load()
        st.persist(
            incarnation=None,
            ready=Ready(entries=entries, hard_state=HardState(term=2, vote="n1", commit=0)),
            compaction=None,
        )
        [segment] = data.glob("log-*.seg")
        size = segment.stat().st_size
        st.persist(
            incarnation=None,
            ready=Ready(hard_state=HardState(term=2, vote="n1", commit=3)),
            compaction=None,
        )
        assert segment.stat().st_size == size, "a commit-only persist wrote"
        lagging = _crash_copy(data, tmp_path / "crash1").persisted
        assert lagging.entries == entries
        assert lagging.hard_state == HardState(term=2, vote="n1", commit=0)

        st.persist(  # entries without a hard state carry the pending commit
            incarnation=None,
            ready=Ready(entries=(Entry(term=2, index=4, data=b"y"),)),
            compaction=None,
        )
        caught_up = _crash_copy(data, tmp_path / "crash2").persisted
        assert caught_up.hard_state == HardState(term=2, vote="n1", commit=3)
        assert len(caught_up.entries) == 4

        st.persist(  # a new vote is never deferred, commit or not
            incarnation=None,
            ready=Ready(hard_state=HardState(term=3, vote="n2", commit=3)),
            compaction=None,
        )
        voted = _crash_copy(data, tmp_path / "crash3").persisted
        assert voted.hard_state == HardState(term=3, vote="n2", commit=3)

        st.persist(
            incarnation=None,
            ready=Ready(hard_state=HardState(term=3, vote="n2", commit=4)),
            compaction=None,
        )
    with FileStorage(data) as again:  # close() wrote the pending commit
        assert again.load().persisted.hard_state == HardState(term=3, vote="n2", commit=4)
