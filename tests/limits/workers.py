"""Worker kinds the limits tests load into real nodes (``--worker-module``).

``Stall`` (kind ``"stall"``): a call ``sleep:<seconds>`` holds the activation that long
(so later messages queue in its mailbox); ``count`` answers how many calls it has run
(``count`` itself excluded); anything else is echoed. Casts are counted too.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

from registry.worker import Worker


class Stall(Worker):
    kind: ClassVar[str] = "stall"

    def __init__(self) -> None:
        self.calls = 0
        self.casts = 0

    async def handle_call(self, payload: bytes) -> bytes:
        if payload == b"count":
            return f"{self.calls} {self.casts}".encode()
        self.calls += 1
        if payload.startswith(b"sleep:"):
            await asyncio.sleep(float(payload[6:]))
        return payload

    async def handle_cast(self, payload: bytes) -> None:
        self.casts += 1
