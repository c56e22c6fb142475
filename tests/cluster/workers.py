"""A worker kind the cluster tests load into real nodes (``--worker-module``).

``Probe`` (kind ``"probe"``) answers questions about its own activation, so a test can see
what a node process received: ``args`` → the registration args, ``reason`` → why it
started (``new``, ``failover``, ``handoff``, ``restart``), ``token`` → its fencing token.
"""

from __future__ import annotations

from typing import ClassVar

from registry.worker import Context, Worker


class Probe(Worker):
    kind: ClassVar[str] = "probe"

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        if payload == b"args":
            return self.ctx.args
        if payload == b"reason":
            return self.ctx.reason.value.encode()
        if payload == b"token":
            return str(self.ctx.token).encode()
        raise ValueError(f"unknown question {payload!r}")
