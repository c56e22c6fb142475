"""Worker kinds for ``tests/cluster/test_client.py`` (nodes load them with
``--worker-module tests.cluster.client_workers``).

``Sleeper`` (kind ``"sleeper"``): ``whoami`` answers ``node:token``; ``sleep:<seconds>``
first appends ``start <node> <token>`` to the file named by the registration ``args``
(so a test can wait until a call is running without sleeping itself), then sleeps and
answers ``node:token``.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from registry.worker import Context, Worker

__all__ = ["Sleeper"]


class Sleeper(Worker):
    """A worker whose calls can take a while; see the module docstring."""

    kind: ClassVar[str] = "sleeper"

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        """Remember who and where this activation is."""
        self.ctx = ctx

    async def handle_call(self, payload: bytes) -> bytes:
        """``whoami`` or ``sleep:<seconds>``; anything else raises ``ValueError``."""
        me = f"{self.ctx.node}:{self.ctx.token}".encode()
        if payload == b"whoami":
            return me
        verb, _, arg = payload.partition(b":")
        if verb != b"sleep":
            raise ValueError(f"unknown command {payload!r}")
        if self.ctx.args:
            with open(self.ctx.args.decode(), "a", encoding="utf-8") as marker:
                marker.write(f"start {self.ctx.node} {self.ctx.token}\n")
        await asyncio.sleep(float(arg))
        return me
