"""The simulated peer network under the shell simulator: the Driver's ``send`` callback.

Rules: each message is dropped with probability ``drop`` or when its link is cut (at
send or at delivery), else delivered after a random delay; a link is FIFO (the real
transport is one gRPC stream per peer), so a message never overtakes an earlier one on
the same link. ``crash_after_send`` lets the nemesis kill a node right after it sent a
message of a given kind — the instant a shell that sends before its fsync is wrong.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

from registry.core.replica import PeerMessage

__all__ = ["SimNetwork"]


class SimNetwork:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        rng: random.Random,
        *,
        drop: float,
        delay_s: tuple[float, float],
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.drop = drop
        self.delay_s = delay_s
        self.cut: set[tuple[str, str]] = set()
        self.deliver: Callable[[PeerMessage], None] = lambda msg: None
        """Set by the cluster: hands a message to its destination's Driver, if up."""
        self.after_send: Callable[[str, PeerMessage], None] = lambda src, msg: None
        """Set by the nemesis: sees every message a node sent (may crash the node)."""
        self._last: dict[tuple[str, str], float] = {}
        self.sent = 0
        self.dropped = 0

    def send(self, src: str, msgs: list[PeerMessage]) -> None:
        for msg in msgs:
            self.sent += 1
            link = (src, msg.dst)
            if link in self.cut or self.rng.random() < self.drop:
                self.dropped += 1
                continue
            at = self.loop.time() + self.rng.uniform(*self.delay_s)
            at = max(at, self._last.get(link, 0.0))
            self._last[link] = at
            self.loop.call_at(at, self._arrive, link, msg)
        for msg in msgs:
            self.after_send(src, msg)

    def _arrive(self, link: tuple[str, str], msg: PeerMessage) -> None:
        if link in self.cut:
            self.dropped += 1
            return
        self.deliver(msg)

    def isolate(self, node: str, others: Iterable[str]) -> None:
        for other in others:
            if other != node:
                self.cut |= {(node, other), (other, node)}

    def heal(self) -> None:
        self.cut.clear()
