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

The ``ledger-counter`` kind (``LedgerCounter``) is a ledger worker that also counts:
``incr`` adds one and checkpoints ``{"count", "writer"}`` (``writer``: its token) before
it answers; ``get`` answers ``count:reason:restored_from:writer`` (the writer of the
state it started from). Every ``ctx.checkpoint`` and its answer go to the ledger's
``checkpoint_attempts``. With args ``keep-trying`` it also checkpoints its count every
``KEEP_TRYING_EVERY_S`` from a task that ignores ``on_stop`` — a worker bug, on purpose:
a stopped (fenced) activation that goes on checkpointing with its old token — until
``KEEP_TRYING_S`` after its stop (at most ``KEEP_TRYING_MAX`` attempts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine
from typing import Any, ClassVar

from registry import RegistryError, StaleToken
from registry.testing.ledger import Entry, process_ledger
from registry.worker import Context, Resume, StopCause, Worker
from registry.worker.errors import CheckpointFailed

__all__ = ["LedgerCounter", "LedgerWorker"]

KEEP_TRYING_EVERY_S = 0.1
KEEP_TRYING_S = 30.0
KEEP_TRYING_MAX = 1000


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
        if self.entry is not None and self.ctx is not None:  # on record before it ends
            done = process_ledger(self.ctx.node).stop(self.entry, reason.value, self.state_out)
            await asyncio.wrap_future(done)


class LedgerCounter(LedgerWorker):
    kind: ClassVar[str] = "ledger-counter"

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.restored_writer = 0
        self.stopped_at: float | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        state_in = state.decode() if state is not None else None
        body = json.loads(state_in) if state_in else {}
        self.count = int(body.get("count", 0))
        self.restored_writer = int(body.get("writer", 0))
        if "generation" in body:  # handed over (a checkpoint carries no generation)
            self.generation = int(body["generation"]) + 1
        self.entry = process_ledger(ctx.node).start(ctx.name, ctx.token, ctx.reason.value, state_in)
        await asyncio.wrap_future(self.entry.claimed)
        if ctx.args == b"keep-trying":
            self._spawn(self._keep_trying())

    def _state(self) -> dict[str, int]:
        assert self.ctx is not None
        return {"count": self.count, "writer": self.ctx.token}

    async def handle_call(self, payload: bytes) -> bytes:
        ctx = self.ctx
        assert ctx is not None
        if payload == b"incr":
            self.count += 1
            await self._checkpoint(self.count)
            return str(self.count).encode()
        if payload == b"get":
            return (
                f"{self.count}:{ctx.reason.value}:{ctx.restored_from}:{self.restored_writer}"
            ).encode()
        return await super().handle_call(payload)

    async def begin_handoff(self) -> Resume:
        assert self.entry is not None
        state = {"from": self.entry.id, "generation": self.generation, **self._state()}
        self.state_out = json.dumps(state, sort_keys=True)
        if self.ctx is not None:
            await asyncio.wrap_future(
                process_ledger(self.ctx.node).gave(self.entry, self.state_out)
            )
        return Resume(self.state_out.encode())

    async def on_stop(self, reason: StopCause) -> None:
        self.stopped_at = time.monotonic()
        await super().on_stop(reason)

    async def _checkpoint(self, count: int) -> int:
        """``ctx.checkpoint`` of ``count``, recorded with its answer; raises as it does."""
        ctx, entry = self.ctx, self.entry
        assert ctx is not None and entry is not None
        state = json.dumps({"count": count, "writer": ctx.token}, sort_keys=True)
        stopped, t_try = self.stopped_at is not None, time.monotonic()
        outcome, index = "committed", 0
        try:
            index = await ctx.checkpoint(state.encode())
            return index
        except StaleToken:
            outcome = "stale_token"
            raise
        except CheckpointFailed:
            outcome = "unavailable"
            raise
        except RegistryError as exc:
            outcome = type(exc).__name__
            raise
        finally:
            process_ledger(ctx.node).checkpoint_attempt(
                entry, count, stopped, t_try, outcome, index
            )

    async def _keep_trying(self) -> None:
        """Checkpoint the count again and again, on past ``on_stop`` (bounded)."""
        for _ in range(KEEP_TRYING_MAX):
            await asyncio.sleep(KEEP_TRYING_EVERY_S)  # the worker's checkpoint period
            if self.stopped_at is not None and time.monotonic() > self.stopped_at + KEEP_TRYING_S:
                return
            self._spawn(self._try_once())

    async def _try_once(self) -> None:
        with contextlib.suppress(RegistryError):  # recorded; the loop tries again
            await self._checkpoint(self.count)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
