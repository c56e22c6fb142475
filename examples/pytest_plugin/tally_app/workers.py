"""``Tally`` (kind ``"tally"``): a running total that moves with its name.

Calls: ``b"add N"`` adds N and returns the total; ``b"total"`` returns it; ``b"token"``
returns the activation's fencing token. Casts: ``b"add N"``.
"""

from __future__ import annotations

from typing import ClassVar

from registry.worker import Context, Resume, Worker


class Tally(Worker):
    kind: ClassVar[str] = "tally"

    def __init__(self) -> None:
        self.total = 0
        self.token = 0

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.token = ctx.token
        self.total = int(ctx.args or b"0")  # registration args: the starting total

    async def handle_call(self, payload: bytes) -> bytes:
        if payload == b"token":
            return str(self.token).encode()
        if payload != b"total":
            await self.handle_cast(payload)
        return str(self.total).encode()

    async def handle_cast(self, payload: bytes) -> None:
        verb, _, amount = payload.partition(b" ")
        if verb != b"add":
            raise ValueError(f"unknown command {payload!r}")
        self.total += int(amount)

    async def begin_handoff(self) -> Resume:
        return Resume(str(self.total).encode())

    async def end_handoff(self, state: bytes) -> None:
        self.total = int(state)
