"""Worker kinds that misbehave on purpose, for the worker-host tests (``--worker-module
tests.hosts.workers``). Each writes what it does, with its token and ``time.monotonic()``,
to the SQLite file named by ``$REGISTRY_HOSTS_LEDGER`` (one machine: one monotonic clock,
so rows from different processes compare exactly).

- ``blocker``: ``handle_cast(b"block S")`` runs a *synchronous* loop for S seconds —
  ``time.sleep`` steps, a row per step — which blocks its host's event loop (a blocking
  client library, an image resize). ``handle_cast(b"spin S")`` burns CPU in pure Python
  for S seconds instead. ``handle_call(b"reason"|b"token")`` answers about itself;
  ``b"note"`` answers its token and writes a ``call`` row.
- ``gilhog``: started with reason ``new``, it soon calls C code that holds the GIL for
  ``args`` seconds (``sleep(3)`` through ``ctypes.PyDLL``, which does not release it), so
  no thread of its host — the watchdog included — runs meanwhile; a row before, one after.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sqlite3
import time
from pathlib import Path
from typing import ClassVar

from registry.testing.ledger import connect
from registry.worker import Context, StartReason, Worker

LEDGER_ENV = "REGISTRY_HOSTS_LEDGER"
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rows (name TEXT NOT NULL, token INTEGER NOT NULL, "
    "what TEXT NOT NULL, reason TEXT NOT NULL, t REAL NOT NULL, pid INTEGER NOT NULL)"
)
STEP_S = 0.02

_conn: sqlite3.Connection | None = None


def create(path: Path) -> None:
    conn = connect(path)
    try:
        conn.execute(SCHEMA)
    finally:
        conn.close()


def write(ctx: Context, what: str) -> None:
    global _conn
    if _conn is None:
        _conn = connect(os.environ[LEDGER_ENV], any_thread=True)
    _conn.execute(
        "INSERT INTO rows VALUES (?, ?, ?, ?, ?, ?)",
        (ctx.name, ctx.token, what, ctx.reason.value, time.monotonic(), os.getpid()),
    )


class Blocker(Worker):
    kind: ClassVar[str] = "blocker"

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        write(ctx, "start")

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        if payload == b"reason":
            return self.ctx.reason.value.encode()
        if payload == b"token":
            return str(self.ctx.token).encode()
        if payload == b"pid":
            return str(os.getpid()).encode()
        if payload == b"note":  # a call that leaves a row: when it ran, on which token
            write(self.ctx, "call")
            return str(self.ctx.token).encode()
        raise ValueError(f"unknown question {payload!r}")

    async def handle_cast(self, payload: bytes) -> None:
        assert self.ctx is not None
        what, _, seconds = payload.decode().partition(" ")
        end = time.monotonic() + float(seconds or 30)
        if what == "block":
            while time.monotonic() < end:
                write(self.ctx, "work")
                time.sleep(STEP_S)  # synchronous on purpose: the loop is blocked
        elif what == "spin":
            write(self.ctx, "spin")
            while time.monotonic() < end:
                sum(i * i for i in range(1000))


class GilHog(Worker):
    kind: ClassVar[str] = "gilhog"

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        write(ctx, "start")
        if ctx.reason is StartReason.NEW:
            seconds = int(ctx.args or b"30")
            asyncio.get_running_loop().call_later(0.05, self._hog, ctx, seconds)

    def _hog(self, ctx: Context, seconds: int) -> None:
        write(ctx, "hog")
        ctypes.PyDLL(None).sleep(seconds)  # libc sleep() with the GIL held
        write(ctx, "after")
