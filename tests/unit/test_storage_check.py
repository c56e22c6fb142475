"""Start-up checks (registry/node/storage_check.py) against the states a crash can leave.

The checks refuse a term behind the log; these tests show that no crash point of the
storage's own write order produces one (rule 6 of registry/node/storage.py), that a new
segment is never visible empty (rule 5), and that ``inspect`` (``registry doctor``)
reports a torn tail without cutting it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from registry.core.messages import ConfState, Entry, HardState, Ready, Snapshot, SnapshotMeta
from registry.node.storage import FileStorage, StorageCorrupt
from registry.node.storage_check import inspect, load_checked, problems

CONF = ConfState(voters=frozenset({"n1", "n2", "n3"}))


def ents(first: int, last: int, term: int) -> tuple[Entry, ...]:
    return tuple(Entry(term=term, index=i, data=b"x%d" % i) for i in range(first, last + 1))


def persist(st: FileStorage, ready: Ready) -> None:
    st.persist(incarnation=None, ready=ready, compaction=None)


def test_every_cut_of_a_new_terms_first_write_keeps_the_term(tmp_path: Path) -> None:
    """A follower's first append from a leader of a newer term carries the new term in
    the same persist; wherever a crash cuts that write, the term on disk is not behind
    an entry that survived."""
    src = tmp_path / "src"
    with FileStorage(src, fsync=False) as st:
        st.load()
        persist(st, Ready(entries=ents(1, 3, 1), hard_state=HardState(term=1, commit=3)))
        [seg] = src.glob("log-*.seg")
        before = seg.stat().st_size
        hs = HardState(term=3, vote="n2", commit=5)
        persist(st, Ready(entries=ents(4, 6, 3), hard_state=hs))
        after = seg.stat().st_size
    for cut in range(before, after + 1):
        d = tmp_path / f"cut{cut}"
        shutil.copytree(src, d)
        (d / seg.name).write_bytes(seg.read_bytes()[:cut])
        with FileStorage(d, fsync=False) as st:
            loaded = load_checked(st)  # raises StorageCorrupt on a term behind the log
        entries = loaded.persisted.entries
        assert entries[:3] == ents(1, 3, 1)
        assert loaded.persisted.hard_state.term >= max(e.term for e in entries), cut


def test_a_crash_while_installing_a_snapshot_of_a_newer_term(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshot file is written before the log records of an install; the new term
    was synced before it, so the snapshot is never ahead of the stored term."""
    st = FileStorage(tmp_path, fsync=False)
    st.load()
    persist(st, Ready(entries=ents(1, 3, 1), hard_state=HardState(term=1, commit=3)))
    writes = []
    real = FileStorage._write_records

    def crash_on_second(self: FileStorage, data: bytes, new_file: bool) -> None:
        writes.append(len(data))
        if len(writes) == 2:
            raise OSError("power cut")
        real(self, data, new_file)

    monkeypatch.setattr(FileStorage, "_write_records", crash_on_second)
    snap = Snapshot(meta=SnapshotMeta(index=10, term=3, conf=CONF), data=b"s")
    with pytest.raises(OSError):
        persist(st, Ready(snapshot=snap, hard_state=HardState(term=3, vote="n2", commit=10)))
    monkeypatch.undo()
    st.close()
    with FileStorage(tmp_path, fsync=False) as again:
        loaded = load_checked(again)
    assert loaded.persisted.snapshot == snap
    assert loaded.persisted.hard_state == HardState(term=3, vote="n2", commit=3)


def test_a_new_segment_is_never_visible_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    st = FileStorage(tmp_path, fsync=False)
    st.load()

    def crash(fd: int, data: bytes) -> None:
        raise OSError("killed before the first write")

    monkeypatch.setattr("registry.node.storage._write_all", crash)
    with pytest.raises(OSError):
        persist(st, Ready(entries=ents(1, 1, 1), hard_state=HardState(term=1)))
    monkeypatch.undo()
    st.close()
    assert [p.name for p in tmp_path.glob("log-*")] == [
        "log-0000000001-00000000000000000001.seg.tmp"
    ]
    with FileStorage(tmp_path, fsync=False) as again:
        assert load_checked(again).persisted.entries == ()
    assert not list(tmp_path.glob("log-*"))  # the temp file is gone
    (tmp_path / "log-0000000001-00000000000000000001.seg").write_bytes(b"")
    with FileStorage(tmp_path, fsync=False) as again, pytest.raises(StorageCorrupt, match="empty"):
        load_checked(again)


def test_doctor_reports_a_torn_tail_without_cutting_it(tmp_path: Path) -> None:
    with FileStorage(tmp_path, fsync=False) as st:
        st.load()
        persist(st, Ready(entries=ents(1, 3, 1), hard_state=HardState(term=1, commit=3)))
    [seg] = tmp_path.glob("log-*.seg")
    raw = seg.read_bytes() + b"\xc3\x51\x01half a record"
    seg.write_bytes(raw)
    report = inspect(tmp_path)
    assert report.exit_code == 0 and report.problems == ()
    assert any("torn tail" in note for note in report.notes)
    assert seg.read_bytes() == raw
    assert report.loaded is not None and problems(report.loaded, tmp_path) == []


def test_doctor_does_not_check_a_directory_in_use(tmp_path: Path) -> None:
    with FileStorage(tmp_path, fsync=False) as st:
        st.load()
        report = inspect(tmp_path)
    assert report.exit_code == 1 and "stop the node first" in report.error
    assert report.lines()[-1].startswith("NOT CHECKED")
    assert inspect(tmp_path / "missing").exit_code == 1
    assert not (tmp_path / "missing").exists()
