"""``Room`` (kind ``"room"``): one chat room, running on exactly one node at a time.

Every node loads it with the other examples (``registry.examples``), so ``make run``
serves it; ``examples/chat_rooms/chat.py`` is a client for it. Calls are text commands,
replies are JSON:

===================  ===========================================================
``join:<user>``      add a user (joining twice is harmless) → the room
``leave:<user>``     remove a user → the room
``say:<user>:<text>`` append a line to the history (the user must be in) → the room
``members``          → the room
===================  ===========================================================

"The room" is ``{"room", "node", "token", "members", "history"}``: who is in it, the
last lines said, and where this activation runs with its fencing token.

When the room moves to another node (a node joins or drains), ``begin_handoff`` carries
the member list and history to the next owner, which continues with them
(``end_handoff``). After a crash of its node the room restarts empty elsewhere
(a failover has no state to hand over); a real app would keep what must survive in a
store fenced by ``ctx.token`` (see ``registry.client.fencing``).
"""

from __future__ import annotations

import json
from typing import ClassVar

from registry.worker import Context, Resume, Worker

__all__ = ["Room"]

HISTORY_LINES = 50
"""Lines of history a room keeps (and hands over)."""


class Room(Worker):
    """One chat room; see the module docstring for its commands."""

    kind: ClassVar[str] = "room"

    def __init__(self) -> None:
        self.ctx: Context | None = None
        self.members: list[str] = []
        self.history: list[str] = []

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        """Start empty; a handed-over room arrives in ``end_handoff``."""
        self.ctx = ctx
        self.members, self.history = [], []

    async def handle_call(self, payload: bytes) -> bytes:
        """Run one command (see the module docstring) and answer with the room."""
        verb, _, rest = payload.decode().partition(":")
        if verb == "join" and rest:
            if rest not in self.members:
                self.members.append(rest)
        elif verb == "leave" and rest:
            if rest in self.members:
                self.members.remove(rest)
        elif verb == "say" and ":" in rest:
            user, _, text = rest.partition(":")
            if user not in self.members:
                raise ValueError(f"{user!r} is not in the room")
            self.history = [*self.history, f"{user}: {text}"][-HISTORY_LINES:]
        elif verb != "members":
            raise ValueError(f"unknown command {payload!r}")
        return self._describe()

    async def begin_handoff(self) -> Resume:
        """Moving to another node: take the members and the history along."""
        return Resume(json.dumps({"members": self.members, "history": self.history}).encode())

    async def end_handoff(self, state: bytes) -> None:
        """Continue with what the previous owner handed over."""
        carried = json.loads(state)
        self.members = [str(m) for m in carried["members"]]
        self.history = [str(h) for h in carried["history"]]

    def _describe(self) -> bytes:
        ctx = self.ctx
        return json.dumps(
            {
                "room": ctx.name if ctx else "",
                "node": ctx.node if ctx else "",
                "token": ctx.token if ctx else 0,
                "members": self.members,
                "history": self.history,
            }
        ).encode()
