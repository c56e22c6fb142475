"""Shared pieces of the worker-host tests: the ledger, process checks, a cluster."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.testing.ledger import connect
from registry.testing.local_cluster import LocalCluster
from tests.hosts import workers

WORKER_MODULES = ("registry.examples", "tests.hosts.workers")


def gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie whose parent cannot reap it now)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True  # ESRCH: reaped between the open and the read
    return state in ("Z", "X")


class DeathWatch:
    """Watches ``pid`` from a thread (every 5 ms) and remembers when it was first seen
    ended, while the test waits for other things; ``ended(deadline)`` waits for it until
    ``deadline`` (monotonic) and returns that time, ``math.inf`` if it still runs then."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t = math.inf
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if gone(self.pid):
                self.t = time.monotonic()
                return
            self._stop.wait(0.005)

    def ended(self, deadline: float) -> float:
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._stop.set()
        return self.t


class Ledger:
    def __init__(self, path: Path) -> None:
        self.path = path
        workers.create(path)

    def rows(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        conn = connect(self.path)
        try:
            return list(conn.execute(sql, args))
        finally:
            conn.close()

    def starts(self, name: str) -> list[tuple[int, str, float]]:
        """(token, reason, t) of every start of ``name``, oldest first."""
        rows = self.rows(
            "SELECT token, reason, t FROM rows WHERE name = ? AND what = 'start' ORDER BY t",
            name,
        )
        return [(int(str(a)), str(b), float(str(c))) for a, b, c in rows]

    def last_write(self, name: str, token: int) -> float:
        (t,) = self.rows("SELECT MAX(t) FROM rows WHERE name = ? AND token = ?", name, token)[0]
        return float(str(t))


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    path = tmp_path / "hosts-ledger.sqlite"
    monkeypatch.setenv(workers.LEDGER_ENV, str(path))  # node processes inherit it
    return Ledger(path)


@contextlib.contextmanager
def local_cluster(root: Path, *, workers: int, preset: str = "local") -> Iterator[LocalCluster]:
    c = LocalCluster(
        root, 3, preset=preset, worker_modules=WORKER_MODULES, config={"workers": workers}
    )
    try:
        c.start(timeout=60.0)
        yield c
        crashed = c.crashed()
        assert not crashed, f"node process(es) exited on their own: {crashed}\n{c.log_tails()}"
    except BaseException:
        print(c.log_tails())
        raise
    finally:
        c.close()


def host_pids(c: LocalCluster, node: str) -> list[int]:
    return [int(h["pid"]) for h in c.http_json(node, "/status")["hosts"]]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not gone(pid)
