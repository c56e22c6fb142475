"""Worker kinds the durable-worker tests load into real nodes (``--worker-module``).

``CheckpointCounter`` (kind ``"ckpt-counter"``): ``incr`` adds one and checkpoints the
count before it answers; every answer is ``count:reason:restored_from``.

``PolicyProbe`` (kind ``"policy-probe"``): restart policies (see the class).

``Zombie`` (kind ``"zombie"``): ``leak`` starts a task that outlives the activation and,
once the activation stopped, tries a checkpoint with its old token; it appends the
outcome (``refused <error>`` or ``applied <index>``) to the file named by the args.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from registry import RegistryError
from registry.worker import Context, Resume, StartReason, StopCause, Worker


class CheckpointCounter(Worker):
    kind: ClassVar[str] = "ckpt-counter"

    def __init__(self) -> None:
        self.count = 0
        self.ctx: Context | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        self.count = int(state) if state else 0

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        if payload == b"incr":
            self.count += 1
            await self.ctx.checkpoint(str(self.count).encode())
        elif payload != b"get":
            raise ValueError(f"unknown command {payload!r}")
        return f"{self.count}:{self.ctx.reason.value}:{self.ctx.restored_from}".encode()


class Zombie(Worker):
    kind: ClassVar[str] = "zombie"

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self.stopped = asyncio.Event()
        self.leaked: set[asyncio.Task[None]] = set()

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        if payload == b"leak":
            task = asyncio.get_running_loop().create_task(self._late_checkpoint(self.ctx))
            self.leaked.add(task)
        return f"{self.ctx.token}".encode()

    async def on_stop(self, reason: StopCause) -> None:
        self.stopped.set()

    async def _late_checkpoint(self, ctx: Context) -> None:
        await self.stopped.wait()
        try:
            outcome = f"applied {await ctx.checkpoint(b'from a stopped activation')}"
        except RegistryError as exc:
            outcome = f"refused {type(exc).__name__}: {exc}"
        with Path(ctx.args.decode()).open("a") as out:
            out.write(f"{ctx.token} {outcome}\n")


class PolicyProbe(Worker):
    """``crash`` raises; ``stop``/``quit`` call ``ctx.stop()`` (``quit``: unregister);
    every other call answers ``starts:reason``, ``starts`` counting instances of this
    name in this host process (a class attribute survives instance restarts)."""

    kind: ClassVar[str] = "policy-probe"
    starts: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        PolicyProbe.starts[ctx.name] = PolicyProbe.starts.get(ctx.name, 0) + 1

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        if payload == b"crash":
            raise RuntimeError("asked to crash")
        if payload in (b"stop", b"quit"):
            await self.ctx.stop(unregister=payload == b"quit")
        return f"{PolicyProbe.starts[self.ctx.name]}:{self.ctx.reason.value}".encode()


class ReminderLedger(Worker):
    """Sets the durable reminder ``tick`` (every 0.5 s) when first started; appends each
    firing (``node token reminder fired_at``) to the file named by the args."""

    kind: ClassVar[str] = "reminder-ledger"

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        if ctx.reason is StartReason.NEW:
            await ctx.set_reminder("tick", 0.5)

    async def handle_reminder(self, name: str, fired_at: float) -> None:
        assert self.ctx is not None
        with Path(self.ctx.args.decode()).open("a") as out:
            out.write(f"{self.ctx.node} {self.ctx.token} {name} {fired_at!r}\n")

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        return ",".join(sorted(self.ctx.reminders())).encode()


class Sleeper(Worker):
    """A counter that keeps its count in ``begin_handoff`` state only; it appends each
    start (``start reason state restored_from``) and stop (``stop cause``) to the file
    named by the args, so a test sees when an instance exists."""

    kind: ClassVar[str] = "sleeper"

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self.count = 0

    def _note(self, line: str) -> None:
        assert self.ctx is not None
        with Path(self.ctx.args.decode()).open("a") as out:
            out.write(line + "\n")

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        self.count = int(state) if state else 0
        self._note(f"start {ctx.reason.value} {self.count} {ctx.restored_from}")

    async def handle_call(self, payload: bytes) -> bytes:
        self.count += 1
        return str(self.count).encode()

    async def begin_handoff(self) -> Resume:
        return Resume(str(self.count).encode())

    async def on_stop(self, reason: StopCause) -> None:
        self._note(f"stop {reason.value}")
