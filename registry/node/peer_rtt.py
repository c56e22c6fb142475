"""Peer round-trip times, from the lease protocol's own messages.

Every member heartbeats the leader (``MemberHeartbeat``, numbered by ``seq``) and the
leader answers each with a ``MemberAck`` carrying the same ``seq``. The transport stamps
a heartbeat when it is handed to the link and observes the time when its ack comes back:
``registry_peer_rtt_seconds{peer}`` is therefore the member-lease round trip to the
leader — network both ways plus the leader's core-loop turn — which is exactly the delay
a lease renewal pays. The leader itself measures nothing (it heartbeats no one); a lost
heartbeat leaves no sample, and at most ``PENDING_LIMIT`` unanswered ones are remembered.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from registry.core.membership import MemberAck, MemberHeartbeat

PENDING_LIMIT = 256
"""Unanswered heartbeats remembered (oldest forgotten first): a few seconds' worth."""


class RoundTrips:
    def __init__(
        self,
        observe: Callable[[str, float], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._observe = observe
        self._clock = clock
        self._pending: dict[tuple[str, int], float] = {}

    def sent(self, msg: object) -> None:
        if isinstance(msg, MemberHeartbeat):
            pending = self._pending
            while len(pending) >= PENDING_LIMIT:
                del pending[next(iter(pending))]  # insertion order: the oldest first
            pending[(msg.dst, msg.seq)] = self._clock()

    def received(self, msg: object) -> None:
        if isinstance(msg, MemberAck):
            sent = self._pending.pop((msg.src, msg.seq), None)
            if sent is not None:
                self._observe(msg.src, max(0.0, self._clock() - sent))
