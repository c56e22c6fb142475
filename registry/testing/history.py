"""What the test process saw and did, stored in the ledger file beside what the workers
wrote, so that the checker is a function of one SQLite file.

Tables (times are ``time.monotonic()``, the clock the workers use):

- ``faults``: one row per injected fault — kind, detail, the nodes expected to lose their
  workers (``targets``, JSON), ``t_inject``, ``t_heal``, ``t_converged`` (``-1`` if the
  cluster did not converge within the bound, ``NULL`` if not measured — e.g. all but the
  last node of a rolling restart) and how many faults it counts for.
- ``pauses``: ``pid`` SIGSTOPped at ``t0`` and SIGCONTinued at ``t1`` (written at the
  SIGSTOP, completed at the SIGCONT).
- ``kills``: ``pid`` got SIGKILL and was reaped by ``t``.
- ``acks``: registrations the cluster acknowledged (``t_sent``, ``t_ack``).
- ``ops``: every client operation: kind, node, ok, gRPC code.
- ``minority``: G6 probes of a node without quorum — the write's status code and message,
  and whether ``/status`` answered 200 with JSON.
- ``final``: the leader's listing at the end (name, holder, token).
- ``unregs``: unregisters the workload sent: ``acked`` 1 if the cluster acknowledged it,
  0 if its outcome is unknown (an error: it may or may not have committed).
- ``calls``: calls a worker answered — the name asked, the node and token the worker
  said it was (``whoami``), sent and answered times.
- ``leaders``: (term, leader) as a node's ``/status`` reported it, sampled through the
  run (election safety: one leader per term).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from registry.testing.ledger import connect

SKIPPED = "SKIPPED"
"""The ``minority`` code of a probe whose node had not lost its leader in time."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, detail TEXT NOT NULL, targets TEXT NOT NULL,
    t_inject REAL NOT NULL, t_heal REAL, t_converged REAL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS pauses (pid INTEGER NOT NULL, t0 REAL NOT NULL, t1 REAL);
CREATE TABLE IF NOT EXISTS kills (pid INTEGER NOT NULL, t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS acks (name TEXT PRIMARY KEY, t_sent REAL, t_ack REAL);
CREATE TABLE IF NOT EXISTS ops (kind TEXT, node TEXT, ok INTEGER, code TEXT, t REAL);
CREATE TABLE IF NOT EXISTS minority (
    node TEXT, t REAL, code TEXT, message TEXT, status_ok INTEGER);
CREATE TABLE IF NOT EXISTS final (name TEXT PRIMARY KEY, node TEXT, token INTEGER);
CREATE TABLE IF NOT EXISTS unregs (name TEXT PRIMARY KEY, acked INTEGER, t REAL);
CREATE TABLE IF NOT EXISTS calls (
    name TEXT, node TEXT, token INTEGER, t_sent REAL, t_answer REAL);
CREATE TABLE IF NOT EXISTS leaders (node TEXT, t REAL, term INTEGER, leader TEXT);
"""


class History:
    """Appends to the history tables; thread-safe (one connection, one lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn = connect(path, any_thread=True)
        self._conn.executescript(SCHEMA)

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany(sql, rows)
            self._conn.execute("COMMIT")

    def fault(
        self, kind: str, detail: str, targets: Iterable[str], t_inject: float, count: int = 1
    ) -> int:
        with self._lock:
            cur = self._conn.execute(
                "INSERT INTO faults(kind, detail, targets, t_inject, count) VALUES (?,?,?,?,?)",
                (kind, detail, json.dumps(sorted(targets)), t_inject, count),
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def healed(self, fault: int, t_heal: float) -> None:
        self._write("UPDATE faults SET t_heal = ? WHERE id = ?", [(t_heal, fault)])

    def converged(self, fault: int, t: float | None) -> None:
        self._write("UPDATE faults SET t_converged = ? WHERE id = ?", [(t, fault)])

    def paused(self, pid: int, t0: float) -> int:
        """``pid`` got SIGSTOP at ``t0``; ``resumed`` completes the row (a row left
        without ``t1`` makes the history unjudgeable: the checker refuses it)."""
        with self._lock:
            cur = self._conn.execute("INSERT INTO pauses VALUES (?, ?, NULL)", (pid, t0))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def resumed(self, pause: int, t1: float) -> None:
        self._write("UPDATE pauses SET t1 = ? WHERE rowid = ?", [(t1, pause)])

    def kill(self, pid: int, t: float) -> None:
        """Process ``pid`` was gone by ``t`` (``kill -9``, or exited after SIGTERM) and
        reaped: nothing of it runs after this (the checker ends its activations here)."""
        self._write("INSERT INTO kills VALUES (?, ?)", [(pid, t)])

    def acked(self, names: Iterable[str], t_sent: float, t_ack: float) -> None:
        self._write(
            "INSERT OR REPLACE INTO acks VALUES (?, ?, ?)", [(n, t_sent, t_ack) for n in names]
        )

    def op(self, kind: str, node: str, ok: bool, code: str = "") -> None:
        self._write(
            "INSERT INTO ops VALUES (?,?,?,?,?)", [(kind, node, ok, code, time.monotonic())]
        )

    def minority(self, node: str, code: str, message: str, status_ok: bool) -> None:
        self._write(
            "INSERT INTO minority VALUES (?,?,?,?,?)",
            [(node, time.monotonic(), code, message, status_ok)],
        )

    def unregistered(self, name: str, acked: bool) -> None:
        self._write(
            "INSERT OR REPLACE INTO unregs VALUES (?, ?, ?)", [(name, int(acked), time.monotonic())]
        )

    def answered(self, name: str, node: str, token: int, t_sent: float, t_answer: float) -> None:
        self._write(
            "INSERT INTO calls VALUES (?, ?, ?, ?, ?)", [(name, node, token, t_sent, t_answer)]
        )

    def leaders(self, rows: Sequence[tuple[str, float, int, str]]) -> None:
        """/status samples: (node asked, time, its term, the leader it named)."""
        self._write("INSERT INTO leaders VALUES (?, ?, ?, ?)", rows)

    def final(self, names: dict[str, tuple[str, int]]) -> None:
        self._write(
            "INSERT OR REPLACE INTO final VALUES (?, ?, ?)",
            [(n, node, token) for n, (node, token) in names.items()],
        )

    def close(self) -> None:
        with self._lock:
            self._conn.close()
