"""The activation ledger: a shared SQLite file every node process writes to.

One machine has one ``CLOCK_MONOTONIC`` (network namespaces do not change clocks), so
times written by different node processes compare exactly.

Tables
------
``activations``: one row per worker instance (``id``): name, node, pid, token, start
reason, ``called_t`` (when ``on_start`` ran), ``claim_t`` (when its claim on the fenced
table was written), heartbeats (``beats``, ``last_ok_t``, ``last_try_t``, ``rejected``),
``stop_t`` and ``stop_cause`` (when ``on_stop`` ran), and the handoff states it received
(``state_in``) and gave away (``state_out``).

``fenced``: the external store a worker protects with its fencing token. One row per
name; a write is accepted only if the writer's token is ≥ the stored token (Kleppmann's
fencing). Rejected writes go to ``rejections``. A write that is *accepted* although a
different activation that claimed the name *later* had already written there is a stale
write the fence let through; it goes to ``stale_accepted`` (with monotonic tokens that
cannot happen, so the table must stay empty).

``checkpoint_attempts``: one row per ``ctx.checkpoint`` of a ``ledger-counter`` worker
(``registry.testing.ledger_worker``): its activation, token, the count it tried to keep,
whether its activation had already stopped, when it was tried and answered, and the
answer (``committed`` with the log index, ``stale_token``, ``unavailable``, ...).

Writing
-------
Each node process has one ``Ledger`` with one writer thread. Worker hooks only queue
(``start``/``stop``) and register as live; the thread writes, in one transaction at a
time: queued claims and stops, then — every ``BEAT_S`` — one fenced heartbeat for every
live worker. Its timestamp is taken *after* the write lock is held and *before* the live
set is read, so ledger order is time order and a heartbeat never postdates the ``on_stop``
that ended its worker. WAL mode and ``synchronous=OFF``: a killed process loses nothing
it committed (the OS holds the pages); only a machine crash could.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("registry.testing.ledger")
NODE_PID_ENV = "REGISTRY_NODE_PID"
"""Set in worker host processes to the pid of their node's control process."""

ENV = "REGISTRY_LEDGER"
"""Environment variable with the ledger's path (node processes inherit it)."""
BEAT_S = 0.05
"""Heartbeat period of every live worker, seconds."""
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for the lock (a SIGSTOPped process may hold it)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS activations (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, node TEXT NOT NULL, pid INTEGER NOT NULL,
    token INTEGER NOT NULL, reason TEXT NOT NULL, called_t REAL NOT NULL,
    claim_t REAL, claim_ok INTEGER, beats INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0, last_ok_t REAL, last_try_t REAL,
    stop_t REAL, stop_cause TEXT, state_in TEXT, state_out TEXT, host_pid INTEGER);
CREATE INDEX IF NOT EXISTS activations_name ON activations(name);
CREATE TABLE IF NOT EXISTS fenced (
    name TEXT PRIMARY KEY, token INTEGER NOT NULL, writer TEXT NOT NULL,
    claim_t REAL NOT NULL, t REAL NOT NULL, writes INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS rejections (
    activation TEXT NOT NULL, name TEXT NOT NULL, token INTEGER NOT NULL, t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS stale_accepted (
    activation TEXT NOT NULL, name TEXT NOT NULL, token INTEGER NOT NULL,
    newer_writer TEXT NOT NULL, t REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint_attempts (
    activation TEXT NOT NULL, name TEXT NOT NULL, token INTEGER NOT NULL,
    count INTEGER NOT NULL, stopped INTEGER NOT NULL, t_try REAL NOT NULL,
    t_done REAL NOT NULL, outcome TEXT NOT NULL, log_index INTEGER);
"""

# Accept if token >= stored; the SET right-hand sides read the *old* row, so RETURNING
# tells who held the row before this write.
_CLAIM = """
INSERT INTO fenced(name, token, writer, claim_t, t) VALUES (?1, ?2, ?3, ?4, ?4)
ON CONFLICT(name) DO UPDATE SET token = ?2, writer = ?3, claim_t = ?4, t = ?4,
    writes = fenced.writes + 1
WHERE ?2 >= fenced.token
"""
_WRITE = """
UPDATE fenced SET token = ?2, writer = ?3, claim_t = ?4, t = ?5, writes = writes + 1
WHERE name = ?1 AND token <= ?2
"""
_PREV = "SELECT writer, claim_t FROM fenced WHERE name = ?"


def connect(path: Path | str, *, any_thread: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, no fsync;
    ``any_thread``: usable from other threads too (the caller serialises its use)."""
    conn = sqlite3.connect(
        str(path),
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=not any_thread,
    )
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    return conn


def create(path: Path) -> None:
    """Create an empty ledger at ``path`` (before any node starts)."""
    conn = connect(path)
    try:
        conn.executescript(SCHEMA)
    finally:
        conn.close()


@dataclass(slots=True, eq=False)
class Entry:
    """One live worker instance, as its writer thread sees it."""

    id: str
    name: str
    token: int
    claim_t: float | None = None
    stopped: bool = False
    claimed: Future[bool] = field(default_factory=Future)


class Ledger:
    """The per-process writer (see the module docstring). Thread-safe."""

    def __init__(self, path: Path | str, node: str) -> None:
        self.path = str(path)
        self.node = node
        # The node's pid (its control process), which tests kill, pause and watch; the
        # worker itself runs in one of the node's worker host processes.
        self.pid = int(os.environ.get(NODE_PID_ENV, os.getpid()))
        self._cv = threading.Condition()
        self._queue: list[tuple[str, Entry, tuple[object, ...]]] = []
        self._live: dict[str, Entry] = {}
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="ledger-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- called from worker hooks (event loop) -----------------------------------------

    def start(self, name: str, token: int, reason: str, state_in: str | None) -> Entry:
        entry = Entry(id=uuid.uuid4().hex, name=name, token=token)
        row = (
            entry.id,
            name,
            self.node,
            self.pid,
            token,
            reason,
            time.monotonic(),
            state_in,
            os.getpid(),  # the worker host: a SIGKILLed host writes no stop row
        )
        with self._cv:
            self._queue.append(("start", entry, row))
            self._cv.notify()
        return entry

    def stop(self, entry: Entry, cause: str, state_out: str | None) -> Future[bool]:
        """Record that ``entry`` stopped now; done once committed. ``on_stop`` waits for
        it: the activation's end is reported (and a handoff's ``Released`` proposed)
        only after ``on_stop`` returns, so the row is on record before a successor can
        start. Not waiting lost the rows of a host that exited right after its stops
        (``os._exit`` skips the flush at exit), and the check then took the node's exit
        as their end: a G1 "duplicate" beside successors that started after them."""
        now = time.monotonic()
        done: Future[bool] = Future()
        with self._cv:
            entry.stopped = True
            self._live.pop(entry.id, None)
            self._queue.append(("stop", entry, (now, cause, state_out, done)))
            self._cv.notify()
        return done

    def gave(self, entry: Entry, state_out: str) -> Future[bool]:
        """Record the state ``entry`` hands over, before it leaves the worker: a host
        that exits (or is killed) right after its handoff may never write its stop row,
        and the check must still know what that activation gave. Done once committed."""
        done: Future[bool] = Future()
        with self._cv:
            self._queue.append(("gave", entry, (state_out, done)))
            self._cv.notify()
        return done

    def checkpoint_attempt(
        self, entry: Entry, count: int, stopped: bool, t_try: float, outcome: str, index: int
    ) -> None:
        """Record one ``ctx.checkpoint`` of ``entry`` and its answer (``index``: 0 unless
        committed)."""
        row = (entry.id, entry.name, entry.token, count, int(stopped), t_try)
        with self._cv:
            self._queue.append(("attempt", entry, (*row, time.monotonic(), outcome, index)))
            self._cv.notify()

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the thread (at exit; safe to call twice)."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout)

    # -- the writer thread -------------------------------------------------------------

    def _run(self) -> None:
        conn = connect(self.path)
        next_beat = time.monotonic()
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    wait = next_beat - time.monotonic()
                    if wait <= 0:
                        break
                    self._cv.wait(wait)
                closing = self._closing
            beat = time.monotonic() >= next_beat and not closing
            try:
                self._transaction(conn, beat)
            except sqlite3.Error:
                log.exception("ledger write failed; retrying")
                time.sleep(BEAT_S)  # back off after an error, then try again
                continue
            if beat:
                next_beat = max(next_beat + BEAT_S, time.monotonic())
            if closing:
                with self._cv:
                    if not self._queue:
                        break
        conn.close()

    def _transaction(self, conn: sqlite3.Connection, beat: bool) -> None:
        conn.execute("BEGIN IMMEDIATE")
        with self._cv:
            queue, self._queue = self._queue, []
        try:
            now = time.monotonic()  # after the lock, before the live set is read
            claims = [self._apply(conn, kind, entry, row, now) for kind, entry, row in queue]
            if beat:
                with self._cv:
                    live = list(self._live.values())
                self._beat(conn, live, now)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            with self._cv:
                self._queue[:0] = queue
            raise
        with self._cv:
            for entry, _ok in (c for c in claims if c is not None):
                entry.claim_t = now
                if not entry.stopped:
                    self._live[entry.id] = entry
        for entry, ok in (c for c in claims if c is not None):
            if not entry.claimed.done():  # its waiter may have been cancelled (shutdown)
                entry.claimed.set_result(ok)
        for kind, _entry, row in queue:
            done = row[-1] if kind in ("gave", "stop") else None
            if isinstance(done, Future) and not done.done():
                done.set_result(True)

    def _apply(
        self, conn: sqlite3.Connection, kind: str, entry: Entry, row: tuple[object, ...], now: float
    ) -> tuple[Entry, bool] | None:
        if kind == "gave":
            conn.execute("UPDATE activations SET state_out = ? WHERE id = ?", (row[0], entry.id))
            return None
        if kind == "attempt":
            conn.execute("INSERT INTO checkpoint_attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return None
        if kind == "stop":
            conn.execute(
                "UPDATE activations SET stop_t = ?, stop_cause = ?, state_out = ? WHERE id = ?",
                (*row[:3], entry.id),
            )
            return None
        conn.execute(
            "INSERT INTO activations(id, name, node, pid, token, reason, called_t, state_in, "
            "host_pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )
        ok = conn.execute(_CLAIM, (entry.name, entry.token, entry.id, now)).rowcount > 0
        if not ok:
            conn.execute(
                "INSERT INTO rejections VALUES (?, ?, ?, ?)",
                (entry.id, entry.name, entry.token, now),
            )
        conn.execute(
            "UPDATE activations SET claim_t = ?, claim_ok = ? WHERE id = ?",
            (now, int(ok), entry.id),
        )
        return entry, ok

    def _beat(self, conn: sqlite3.Connection, live: list[Entry], now: float) -> None:
        accepted, rejected = [], []
        for entry in live:
            assert entry.claim_t is not None
            prev = conn.execute(_PREV, (entry.name,)).fetchone()
            args = (entry.name, entry.token, entry.id, entry.claim_t, now)
            if conn.execute(_WRITE, args).rowcount > 0:
                accepted.append((now, now, entry.id))
                if prev is not None and prev[0] != entry.id and prev[1] > entry.claim_t:
                    # Accepted although an activation that claimed later had written.
                    conn.execute(
                        "INSERT INTO stale_accepted VALUES (?, ?, ?, ?, ?)",
                        (entry.id, entry.name, entry.token, prev[0], now),
                    )
            else:
                rejected.append((now, entry.id))
                conn.execute(
                    "INSERT INTO rejections VALUES (?, ?, ?, ?)",
                    (entry.id, entry.name, entry.token, now),
                )
        conn.executemany(
            "UPDATE activations SET beats = beats + 1, last_ok_t = ?, last_try_t = ? WHERE id = ?",
            accepted,
        )
        conn.executemany(
            "UPDATE activations SET rejected = rejected + 1, last_try_t = ? WHERE id = ?",
            rejected,
        )


_ledger: Ledger | None = None
_ledger_lock = threading.Lock()


def process_ledger(node: str) -> Ledger:
    """This process's ledger (created on first use from ``$REGISTRY_LEDGER``)."""
    global _ledger
    with _ledger_lock:
        if _ledger is None:
            path = os.environ.get(ENV)
            if not path:
                raise RuntimeError(f"the ledger worker needs ${ENV} (the SQLite ledger path)")
            _ledger = Ledger(path, node)
        return _ledger
