"""Latency of ``FileStorage.persist`` on this machine's disk, not a test.

    .venv/bin/python scripts/bench_storage.py [--calls 200] [--dir /var/lib/registry]

Each row persists ``--calls`` Readies one after another into a fresh data directory and
reports per-call wall time. The fsync'd 1-entry row is the floor on a node's commit
latency (every Ready is persisted before its messages are sent); the fsync=False row is
the Python cost of encoding and writing, i.e. what fsync adds is the difference.
``--dir`` should be on the disk a node would use (the default is the system temp dir).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from registry.core.messages import ConfState, Entry, HardState, Ready, Snapshot, SnapshotMeta
from registry.node.storage import FileStorage

Step = Callable[[FileStorage, int], None]


def one_entry(st: FileStorage, i: int) -> None:
    ready = Ready(
        entries=(Entry(term=1, index=i, data=b"x" * 100),),
        hard_state=HardState(term=1, vote="n1", commit=i),
    )
    st.persist(incarnation=None, ready=ready, compaction=None)


def batch_of_100(st: FileStorage, i: int) -> None:
    first = (i - 1) * 100 + 1
    entries = tuple(Entry(term=1, index=j, data=b"x" * 100) for j in range(first, first + 100))
    ready = Ready(entries=entries, hard_state=HardState(term=1, commit=first + 99))
    st.persist(incarnation=None, ready=ready, compaction=None)


def compaction_64k(st: FileStorage, i: int) -> None:
    one_entry(st, i)
    meta = SnapshotMeta(index=i, term=1, conf=ConfState(voters=frozenset({"n1"})))
    st.persist(incarnation=None, ready=Ready(), compaction=Snapshot(meta=meta, data=bytes(65536)))


def measure(base: Path, step: Step, calls: int, *, fsync: bool) -> list[float]:
    with tempfile.TemporaryDirectory(dir=base) as tmp, FileStorage(Path(tmp), fsync=fsync) as st:
        st.load()
        step(st, 1)  # creates the segment file (an extra directory fsync)
        times = []
        for i in range(2, calls + 2):
            start = time.perf_counter()
            step(st, i)
            times.append(time.perf_counter() - start)
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    rows: list[tuple[str, Step, bool]] = [
        ("1 entry + hard state, fsync", one_entry, True),
        ("1 entry + hard state, no fsync", one_entry, False),
        ("100 entries (10 KiB), fsync", batch_of_100, True),
        ("1 entry, then compaction (64 KiB snapshot), fsync", compaction_64k, True),
    ]
    print(f"persist latency, {args.calls} calls each, in {args.dir}")
    print(f"{'case':<52} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
    for name, step, fsync in rows:
        times = sorted(measure(args.dir, step, args.calls, fsync=fsync))
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        print(
            f"{name:<52} {statistics.median(times) * 1e3:>10.3f} {p99 * 1e3:>8.3f}"
            f" {times[-1] * 1e3:>8.3f}"
        )


if __name__ == "__main__":
    main()
