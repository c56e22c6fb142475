"""Example workers: the ones ``registry dev`` runs, and a template for your own.

- ``Counter`` (kind ``"counter"``) keeps a count and carries it across handoffs.
- ``Echo`` (kind ``"echo"``) answers every call with its payload.
- ``Room`` (kind ``"room"``) is a chat room whose members and history move with it
  (used by ``examples/chat_rooms``).
"""

from __future__ import annotations

from typing import ClassVar

from registry.worker import Context, Resume, Worker

__all__ = ["Counter", "Echo", "Room"]


class Counter(Worker):
    """A count that survives moves between nodes (not crashes: a restart starts at 0).

    Calls: ``b"incr"`` adds one and returns the new count as decimal text; ``b"get"``
    returns the count. Casts accept ``b"incr"``. Anything else raises ``ValueError``
    (the caller gets ``WorkerFailed`` and the counter restarts from 0).
    """

    kind: ClassVar[str] = "counter"

    def __init__(self) -> None:
        self.count = 0

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        """Start at zero; a handed-off count arrives in ``end_handoff``."""
        self.count = 0

    async def handle_call(self, payload: bytes) -> bytes:
        """``incr`` → the new count; ``get`` → the count (decimal text)."""
        if payload == b"incr":
            self.count += 1
        elif payload != b"get":
            raise ValueError(f"unknown command {payload!r}: expected b'incr' or b'get'")
        return str(self.count).encode()

    async def handle_cast(self, payload: bytes) -> None:
        """``incr`` adds one; nothing is returned."""
        if payload != b"incr":
            raise ValueError(f"unknown command {payload!r}: casts accept only b'incr'")
        self.count += 1

    async def begin_handoff(self) -> Resume:
        """Carry the count to the next owner."""
        return Resume(str(self.count).encode())

    async def end_handoff(self, state: bytes) -> None:
        """Continue from the count the previous owner handed over."""
        self.count = int(state.decode())


class Echo(Worker):
    """Answers every call with its payload; stateless, so a handoff just restarts it."""

    kind: ClassVar[str] = "echo"

    async def handle_call(self, payload: bytes) -> bytes:
        """Return ``payload`` unchanged."""
        return payload


from registry.examples.rooms import Room  # noqa: E402  (re-exported)
