"""The ``ledger`` worker kind: records its life in the shared SQLite ledger.

Load it with ``registry node --worker-module registry.testing.ledger_worker`` and set
``$REGISTRY_LEDGER`` to the ledger path (``registry.testing.ledger.create`` makes one).

- ``on_start`` records the start (name, node, token, reason, ``time.monotonic()``) and
  waits until its claim on the fenced table is written: like a real fenced client, an
  activation first writes its token to the store, then works.
- While live, it heartbeats every 50 ms through the fenced table (the Worker API's
  ``Context`` offers no lease check, so every heartbeat is a fenced write: a stale
  activation's writes are rejected and counted rather than trusted).
- ``begin_handoff`` answers ``Resume(state)`` where the state names this activation and
  counts the handoffs so far; the next owner records what it received, so the checker
  can see that state moved intact (G5).
- ``on_stop`` records the stop and its cause.
- Calls: ``b"whoami"`` answers ``node:token``.
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

from registry.testing.ledger import Entry, process_ledger
from registry.worker import Context, Resume, StopCause, Worker

__all__ = ["LedgerWorker"]


class LedgerWorker(Worker):
    kind: ClassVar[str] = "ledger"

    def __init__(self) -> None:
        self.entry: Entry | None = None
        self.ctx: Context | None = None
        self.generation = 0
        self.state_out: str | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        state_in = state.decode() if state is not None else None
        if state_in is not None:
            self.generation = int(json.loads(state_in)["generation"]) + 1
        ledger = process_ledger(ctx.node)
        self.entry = ledger.start(ctx.name, ctx.token, ctx.reason.value, state_in)
        await asyncio.wrap_future(self.entry.claimed)

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        if payload == b"whoami":
            return f"{self.ctx.node}:{self.ctx.token}".encode()
        raise ValueError(f"unknown call {payload!r}: expected b'whoami'")

    async def begin_handoff(self) -> Resume:
        assert self.entry is not None
        state = {"from": self.entry.id, "generation": self.generation}
        self.state_out = json.dumps(state, sort_keys=True)
        if self.ctx is not None:  # on record before the state leaves (Ledger.gave)
            await asyncio.wrap_future(
                process_ledger(self.ctx.node).gave(self.entry, self.state_out)
            )
        return Resume(self.state_out.encode())

    async def on_stop(self, reason: StopCause) -> None:
        if self.entry is not None and self.ctx is not None:
            process_ledger(self.ctx.node).stop(self.entry, reason.value, self.state_out)
