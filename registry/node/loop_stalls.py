"""How late the control process's event loop runs, and why.

Every heartbeat, lease renewal and sub-lease the node sends waits for a turn of one
event loop; a turn that comes late by more than the election timeout costs an election
or a lease. ``LoopStalls`` sleeps ``period`` again and again and measures how late it
wakes (``registry_event_loop_lag_seconds``). A lag of ``warn_after`` or more is logged
with the event loop thread's CPU time over the same stretch, which tells the two causes
apart:

- **busy**: the thread ran Python all along (CPU ≈ lag) — the node's own work ran too
  long in one piece; the log names the longest Ready the node handled meanwhile
  (``slowest``).
- **not running**: the thread barely used CPU (well below the lag) — it was not
  scheduled (an overloaded machine, CPU limits), waited for the GIL, or blocked in a
  system call on the loop.

Garbage-collection pauses are logged separately (``gc_pauses``) and show as *blocked*.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Histogram

log = logging.getLogger("registry.node")

PERIOD_S = 0.05
"""How often the monitor wakes (a tick of the lan preset)."""
WARN_AFTER_S = 0.25
"""A lag this long is most of the lan election timeout (0.4 s): worth a warning."""
KEEP = 16
NOT_RUNNING_BELOW = 0.5
"""CPU time under this share of the lag: the thread was not running, not busy."""


class LoopStalls:
    def __init__(
        self,
        histogram: Histogram,
        *,
        slowest: Callable[[], str] = lambda: "",
        period_s: float = PERIOD_S,
        warn_after_s: float = WARN_AFTER_S,
    ) -> None:
        self.histogram = histogram
        self.slowest = slowest
        self.period_s = period_s
        self.warn_after_s = warn_after_s
        self.warnings: list[str] = []
        """What each warning said (the last ``KEEP``), for tests and the curious."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started, cpu = loop.time(), time.thread_time()
            await asyncio.sleep(self.period_s)
            lag = max(0.0, loop.time() - started - self.period_s)
            self.histogram.observe(lag)
            if lag >= self.warn_after_s:
                self.report(lag, time.thread_time() - cpu)

    def report(self, lag: float, cpu: float) -> None:
        slowest = self.slowest()
        if cpu < NOT_RUNNING_BELOW * lag:
            why = (
                "its thread was not running: the machine is overloaded (or CPU-limited), "
                "the GIL was held elsewhere, or a system call blocked the loop"
            )
        else:
            why = "busy with its own work" + (f"; the longest Ready: {slowest}" if slowest else "")
        message = (
            f"the event loop ran {lag * 1000:.0f} ms late "
            f"({cpu * 1000:.0f} ms of CPU on its thread meanwhile): {why}"
        )
        self.warnings = [*self.warnings[-KEEP + 1 :], message]
        log.warning("%s", message)
