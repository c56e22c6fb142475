"""Every ``persist`` that returned survives a power cut under POSIX's strict rules.

The LazyFS scenarios cannot see a missing *directory* fsync (see ``strict_fs.py``); this
test can. A real ``FileStorage`` writes a seeded log with small segments (a new file
every few writes), frequent compaction snapshots (segments deleted, snapshot files
replaced) and a new incarnation now and then, while ``StrictDir`` records its calls.
After every ``persist`` that returned, the directory a power cut may leave is loaded by
a fresh ``FileStorage``: it must load, and hold every entry, the hard state, the
snapshot and the incarnation that were persisted. Needs no root: it runs everywhere.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from registry.core.messages import ConfState, Entry, HardState, Ready, Snapshot, SnapshotMeta
from registry.node.storage import FileStorage
from tests.durability.strict_fs import StrictDir

CONF = ConfState(voters=frozenset({"n1", "n2", "n3"}))
PERSISTS = 160


@pytest.mark.parametrize("seed", [1, 2])
def test_every_returned_persist_survives_a_strict_power_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    strict = StrictDir(data_dir)
    strict.install(monkeypatch)
    storage = FileStorage(data_dir, segment_bytes=1024)
    storage.load()
    entries: dict[int, Entry] = {}
    hard, snapshot, incarnation = HardState(), None, 0
    segments: set[str] = set()
    compactions = 0
    for step in range(PERSISTS):
        first = len(entries) + 1
        batch = tuple(
            Entry(term=1, index=i, data=rng.randbytes(rng.randrange(1, 200)))
            for i in range(first, first + rng.randrange(1, 4))
        )
        entries.update((e.index, e) for e in batch)
        hard = HardState(term=1, vote="n1", commit=batch[-1].index)
        compaction = None
        if step % 15 == 14:
            index = batch[-1].index - rng.randrange(0, 3)
            compaction = Snapshot(
                meta=SnapshotMeta(index=index, term=1, conf=CONF),
                data=f"state at {index}".encode() * 20,
            )
            snapshot, compactions = compaction, compactions + 1
        new_incarnation = incarnation + 1 if step % 40 == 0 else None
        incarnation = new_incarnation or incarnation
        storage.persist(
            incarnation=new_incarnation,
            ready=Ready(entries=batch, hard_state=hard),
            compaction=compaction,
        )
        segments |= {p.name for p in data_dir.glob("log-*.seg")}

        crashed = strict.crash_copy(tmp_path / f"crash-{step}")
        with FileStorage(crashed, fsync=False) as reopened:
            loaded = reopened.load()  # StorageCorrupt here: a power cut broke the log
        persisted = loaded.persisted
        where = f"after persist {step} (entries up to {batch[-1].index})"
        assert loaded.incarnation == incarnation, where
        assert persisted.hard_state == hard, where
        assert persisted.snapshot == snapshot, where
        start = snapshot.meta.index + 1 if snapshot else 1
        want = [entries[i] for i in range(start, batch[-1].index + 1)]
        missing = sorted({e.index for e in want} - {e.index for e in persisted.entries})
        assert not missing, f"{where}: entries {missing[:10]} lost"
        assert list(persisted.entries) == want, where
    storage.close()
    # The run exercised what it is about: many new segment files and snapshots.
    assert len(segments) >= 20 and compactions >= 10, (len(segments), compactions)
