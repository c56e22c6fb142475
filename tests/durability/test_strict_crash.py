"""Every ``persist`` that returned survives a power cut under POSIX's strict rules.

The LazyFS scenarios cannot see a missing *directory* fsync (see ``strict_fs.py``); this
test can. A real ``FileStorage`` writes a seeded log with small segments (a new file
every few writes), frequent compaction snapshots (segments deleted, snapshot files
replaced) and a new incarnation now and then, while ``StrictDir`` records its calls.
After every fsync (inside a ``persist`` or not) the directory a power cut may leave is
loaded by a fresh ``FileStorage``: it must load, and hold every entry of every
``persist`` that returned, and the hard state, snapshot and incarnation of that persist
or of the one under way. Needs no root: it runs everywhere.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.core.messages import ConfState, Entry, HardState, Ready, Snapshot, SnapshotMeta
from registry.node.storage import FileStorage
from tests.durability.strict_fs import StrictDir

CONF = ConfState(voters=frozenset({"n1", "n2", "n3"}))
PERSISTS = 150


@dataclass(frozen=True, slots=True, kw_only=True)
class Durable:
    """What the storage has been told to keep, as of one ``persist``."""

    entries: tuple[Entry, ...]
    """Every entry from index 1 (compaction does not drop them from this model)."""
    hard: HardState
    snapshot: Snapshot | None
    incarnation: int


class Checker:
    """Loads the crash state and compares it with the last returned persist (``done``)
    and, mid-persist, the one under way (``doing``): a crash may land on either."""

    def __init__(self, strict: StrictDir, scratch: Path) -> None:
        self.strict = strict
        self.scratch = scratch
        self.done = Durable(entries=(), hard=HardState(), snapshot=None, incarnation=0)
        self.doing: Durable | None = None
        self.step = 0
        self.crashes = 0

    def crash(self) -> None:
        where = f"{'during' if self.doing else 'after'} persist {self.step}"
        self.crashes += 1
        crashed = self.strict.crash_copy(self.scratch / f"crash-{self.crashes}")
        with FileStorage(crashed, fsync=False) as reopened:
            loaded = reopened.load()  # StorageCorrupt here: a power cut broke the log
        shutil.rmtree(crashed)
        got = loaded.persisted
        allowed = [self.done] if self.doing is None else [self.done, self.doing]
        assert loaded.incarnation in {d.incarnation for d in allowed}, where
        assert got.hard_state in [d.hard for d in allowed], where
        assert got.snapshot in [d.snapshot for d in allowed], where
        start = got.snapshot.meta.index + 1 if got.snapshot else 1
        newest = allowed[-1].entries
        want = newest[start - 1 : len(self.done.entries)]  # everything that was returned
        missing = sorted({e.index for e in want} - {e.index for e in got.entries})
        assert not missing, f"{where}: entries {missing[:10]} lost"
        assert list(got.entries) == list(newest[start - 1 : start - 1 + len(got.entries)]), where


@pytest.mark.parametrize("seed", [1, 2])
def test_every_returned_persist_survives_a_strict_power_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    strict = StrictDir(data_dir)
    strict.install(monkeypatch)
    checker = Checker(strict, tmp_path)
    storage = FileStorage(data_dir, segment_bytes=1024)
    storage.load()
    # A power cut may come after any fsync (only an fsync changes what is durable).
    strict.after_sync = checker.crash
    segments: set[str] = set()
    compactions = 0
    for step in range(PERSISTS):
        checker.step, done = step, checker.done
        first = len(done.entries) + 1
        batch = tuple(
            Entry(term=1, index=i, data=rng.randbytes(rng.randrange(1, 200)))
            for i in range(first, first + rng.randrange(1, 4))
        )
        compaction = None
        if step % 15 == 14:
            index = batch[-1].index - rng.randrange(0, 3)
            compaction = Snapshot(
                meta=SnapshotMeta(index=index, term=1, conf=CONF),
                data=f"state at {index}".encode() * 20,
            )
            compactions += 1
        new_incarnation = done.incarnation + 1 if step % 40 == 0 else None
        checker.doing = Durable(
            entries=done.entries + batch,
            hard=HardState(term=1, vote="n1", commit=batch[-1].index),
            snapshot=compaction or done.snapshot,
            incarnation=new_incarnation or done.incarnation,
        )
        storage.persist(
            incarnation=new_incarnation,
            ready=Ready(entries=batch, hard_state=checker.doing.hard),
            compaction=compaction,
        )
        checker.done, checker.doing = checker.doing, None
        checker.crash()
        segments |= {p.name for p in data_dir.glob("log-*.seg")}
    storage.close()
    # The run exercised what it is about: many new segment files and snapshots.
    assert len(segments) >= 20 and compactions >= 9, (len(segments), compactions)
    assert checker.crashes > 2 * PERSISTS, checker.crashes
