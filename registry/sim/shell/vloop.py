"""A deterministic asyncio event loop with virtual time.

Why: the shell simulator runs the production ``Driver`` (real ``asyncio`` tasks, queues,
``wait_for`` timeouts) for seconds of cluster time in milliseconds of real time, and a
seed must replay exactly. Rules:

- ``time()`` is virtual. When nothing is ready, the loop does not wait: the selector's
  ``select(timeout)`` jumps the clock to the next timer (to the next whole microsecond
  past it). ``select(None)`` (nothing is scheduled at all) is a deadlock and raises
  ``Deadlock``; ``STILL_TURNS`` turns in a row without the clock moving is a livelock
  (code that polls without waiting) and raises ``Deadlock`` too, so a bad seed fails
  instead of hanging. (Code that spins without ever yielding cannot be stopped here.)
- Everything runs on this one thread. ``run_in_executor`` (and so ``asyncio.to_thread``,
  which the Ready loop uses for ``persist``) runs the function on the loop after
  ``executor_delay()`` virtual seconds — the simulated fsync latency. If the awaiting task
  is cancelled first (a crash), the function never runs: the write is lost, as unsynced
  writes are.
- Order is asyncio's own (FIFO callbacks, timers by deadline then insertion), with no
  real IO, so the same program on the same seed yields the same interleaving.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

__all__ = ["STILL_TURNS", "Deadlock", "VirtualLoop"]

T = TypeVar("T")


class Deadlock(RuntimeError):
    """The loop has nothing ready and no timer: it would sleep forever."""


STILL_TURNS = 1_000_000
"""Loop turns at one virtual instant before the loop declares a livelock (a normal seed
takes at most a few hundred)."""


class _JumpingSelector(selectors.SelectSelector):
    """Registers the loop's self-pipe like a real selector but never waits on it."""

    def __init__(self, advance: Callable[[float], None]) -> None:
        super().__init__()
        self._advance = advance
        self._still = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            raise Deadlock("the simulated loop has no timer and nothing ready")
        if timeout > 0:
            self._still = 0
            self._advance(timeout)
        else:
            self._still += 1
            if self._still > STILL_TURNS:
                raise Deadlock(f"{STILL_TURNS} loop turns without time moving (a livelock)")
        return []


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self, *, executor_delay: Callable[[], float] = lambda: 0.0) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self._jump))
        self._executor_delay = executor_delay

    def _jump(self, seconds: float) -> None:
        if seconds > 0:
            # Whole microseconds, one past the deadline: a float sum can land a hair
            # before it, and code that floors elapsed ticks (the Ready loop) must then
            # see the tick as due, as it would on a real clock that kept moving.
            self._now = (math.ceil((self._now + seconds) * 1e6) + 1) / 1e6

    def time(self) -> float:
        return self._now

    def call_at(  # type: ignore[override]
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # A deadline a float's hair in the future would make ``select`` wait 0 s and the
        # loop go round at the same instant forever; real clocks move on, so do we.
        if when > self._now:
            when = max(when, self._now + 1e-6)
        return super().call_at(when, callback, *args, context=context)

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        future: asyncio.Future[T] = self.create_future()

        def run() -> None:
            if future.cancelled():
                return  # the caller is gone (crashed): the work never happens
            try:
                future.set_result(func(*args))
            except Exception as exc:  # handed to the awaiting task, like a thread's
                future.set_exception(exc)

        self.call_later(self._executor_delay(), run)
        return future
