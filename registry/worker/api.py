"""What a worker author writes against: ``Worker``, its ``Context``, and handoff answers.

A worker is a small actor (an Erlang GenServer, an Orleans grain): the runtime makes one
instance per activation, feeds it one message at a time, and calls its hooks around
starts, stops and moves between nodes. Swarm users will recognise the handoff vocabulary:
``begin_handoff`` answers ``Resume(state)``, ``Restart()`` or ``Ignore()``, and the next
owner receives the state in ``end_handoff``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Protocol

from registry.core.state import StartReason

__all__ = [
    "Context",
    "HandoffAnswer",
    "Ignore",
    "Restart",
    "Resume",
    "StartReason",
    "StopCause",
    "Worker",
]


class ScheduleOps(Protocol):
    """What ``Context`` asks its activation for timers and reminders."""

    def set_timer(self, name: str, after: float, every: float | None) -> None: ...

    def cancel_timer(self, name: str) -> bool: ...

    async def set_reminder(self, name: str, due: float, every: float) -> None: ...

    async def cancel_reminder(self, name: str) -> None: ...

    def reminders(self) -> dict[str, tuple[float, float]]: ...


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Who this activation is; passed to ``Worker.on_start``."""

    name: str
    """The registered name this instance serves."""
    node: str
    """The node it runs on."""
    args: bytes
    """The ``args`` given at registration (opaque to the registry)."""
    token: int
    """The fencing token (G2): strictly greater than that of every earlier activation of
    this name. Pass it to external stores so they can reject writes from a stale
    activation."""
    reason: StartReason
    """Why it starts: ``NEW``, ``FAILOVER`` (its node was lost), ``HANDOFF`` (moved here,
    possibly with state) or ``RESTART`` (it crashed, or moved without state). A
    FAILOVER or RESTART starts from the name's last checkpoint, if it has one."""
    restored_from: int = 0
    """The log index of the checkpoint ``on_start``'s ``state`` comes from; 0 when the
    state is not a checkpoint (none taken, NEW, or a HANDOFF's state)."""
    _checkpoint: Callable[[bytes], Awaitable[int]] | None = field(
        default=None, repr=False, compare=False
    )
    _stop: Callable[[bool], None] | None = field(default=None, repr=False, compare=False)
    _schedule: ScheduleOps | None = field(default=None, repr=False, compare=False)

    def _ops(self) -> ScheduleOps:
        if self._schedule is None:
            raise RuntimeError("this context has no runtime for timers and reminders")
        return self._schedule

    def set_timer(
        self, name: str, after: float | timedelta, every: float | timedelta | None = None
    ) -> None:
        """Call ``handle_timer(name)`` after ``after`` seconds, then every ``every``
        seconds if given. In memory only: gone when this instance ends (a crash, a stop,
        a move). Setting it again replaces it."""
        period = None if every is None else _seconds(every)
        self._ops().set_timer(name, _seconds(after), period)

    def cancel_timer(self, name: str) -> bool:
        """Cancel timer ``name``; False if there was none."""
        return self._ops().cancel_timer(name)

    async def set_reminder(
        self,
        name: str,
        at_or_every: datetime | timedelta | float,
        *,
        every: timedelta | float | None = None,
    ) -> None:
        """Set the durable reminder ``name``: ``handle_reminder(name, fired_at)`` is
        called on whichever node runs this name, after failovers too, at least once per
        period. A ``datetime`` fires at that time (then every ``every`` if given);
        seconds or a ``timedelta`` fire every that long, starting one period from now
        (at least 0.5 s). Returns once committed (as ``checkpoint``); raises
        ``StaleToken`` from a superseded activation, ``ValueError`` for a bad period."""
        if isinstance(at_or_every, datetime):
            due, period = at_or_every.timestamp(), 0.0 if every is None else _seconds(every)
        else:
            period = _seconds(at_or_every)
            due = time.time() + period
        await self._ops().set_reminder(name, due, period)

    async def cancel_reminder(self, name: str) -> None:
        """Cancel the durable reminder ``name`` (committed before it returns)."""
        await self._ops().cancel_reminder(name)

    def reminders(self) -> dict[str, tuple[float, float]]:
        """This name's reminders: ``name → (next due time, every)`` (every 0: once)."""
        return self._ops().reminders()

    async def stop(self, *, unregister: bool = False) -> None:
        """End this activation once the running hook returns (``on_stop(STOPPED)``);
        queued calls then fail with ``NotHere``. With ``unregister=True`` the name is
        unregistered too (fenced by this activation's token: a superseded activation
        cannot unregister its successor). Otherwise the registration's restart policy
        decides: ``permanent`` starts a new instance (from the last checkpoint),
        ``transient`` leaves the activation stopped (calls fail with ``WorkerFailed``
        until the name moves or fails over), ``temporary`` unregisters the name."""
        if self._stop is None:
            raise RuntimeError("this context has no runtime to stop")
        self._stop(unregister)

    async def checkpoint(self, state: bytes) -> int:
        """Persist ``state`` as this name's checkpoint and return its log index.

        It returns once the checkpoint is committed: replicated and fsync'd on a majority
        of the voters. A later FAILOVER or RESTART of the name starts with it
        (``on_start(ctx, state)``, ``ctx.restored_from``). Raises ``StaleToken`` when a
        newer activation holds the name (this one is superseded and must stop; nothing
        was written), ``LimitExceeded`` (reason ``STATE_TOO_LARGE``) above the runtime's
        ``max_state_bytes`` (default 1 MiB), ``CheckpointFailed`` when it could not be
        committed in time (it may still be applied later)."""
        if self._checkpoint is None:
            raise RuntimeError("checkpoints need a node: this context has no checkpoint store")
        return await self._checkpoint(bytes(state))


@dataclass(frozen=True, slots=True)
class Resume:
    """``begin_handoff`` answer: stop here and give ``state`` to the next owner.

    States larger than the runtime's ``max_state_bytes`` (default 1 MiB) are refused with
    a logged error and the worker moves without state.
    """

    state: bytes


@dataclass(frozen=True, slots=True)
class Restart:
    """``begin_handoff`` answer: stop here; the next owner starts fresh (no state)."""


@dataclass(frozen=True, slots=True)
class Ignore:
    """``begin_handoff`` answer: keep running here; the name stays until the view changes
    again (and this node is asked again)."""


HandoffAnswer = Resume | Restart | Ignore
"""What ``Worker.begin_handoff`` returns."""


class StopCause(enum.Enum):
    """Why a worker instance stops; passed to ``Worker.on_stop``."""

    QUORUM_LOST = "quorum_lost"
    """This node lost its lease: every worker here stops (another node may take over)."""
    UNREGISTERED = "unregistered"
    """The name was unregistered."""
    SUPERSEDED = "superseded"
    """A newer activation of the name replaced this one (the log moved it)."""
    HANDOFF = "handoff"
    """The name moves to another node (after ``begin_handoff``, or its deadline)."""
    SHUTDOWN = "shutdown"
    """The node shuts down."""
    CRASHED = "crashed"
    """A hook raised; a new instance is started after a backoff (see the runtime)."""
    STOPPED = "stopped"
    """The worker called ``ctx.stop()``."""
    PASSIVATED = "passivated"
    """No message for ``idle_after`` seconds: its ``begin_handoff`` state was
    checkpointed; the next message starts a new instance from it."""


class Worker:
    """Base class of user workers. Subclass it, set ``kind``, override what you need.

    The runtime creates instances with no arguments (``cls()``); per-activation data comes
    in ``on_start``'s ``Context``. All hooks of one instance run one at a time, in mailbox
    order, so they need no locks. A hook that raises ends the instance (``on_stop`` with
    ``CRASHED``) and the runtime starts a new one after a backoff; too many crashes in a
    window mark the activation failed instead of restarting it forever.

    Hooks are interrupted (cancelled) when the node must stop the worker — for example
    when it loses its lease. A worker must let ``asyncio.CancelledError`` through and not
    block the event loop: a worker that is still running ``fence_grace`` seconds after a
    stop makes the node exit (G1).

    Example::

        class Counter(Worker):
            kind = "counter"

            def __init__(self) -> None:
                self.count = 0

            async def handle_call(self, payload: bytes) -> bytes:
                self.count += 1
                return str(self.count).encode()
    """

    kind: ClassVar[str]
    """The worker kind names use at registration (``register(name, kind=...)``)."""

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        """Called once before any message. ``state`` is the handed-off state when
        ``ctx.reason`` is ``HANDOFF`` and the previous owner answered ``Resume``; the last
        checkpoint (``ctx.restored_from``) on a ``FAILOVER`` or ``RESTART``; otherwise
        ``None``. Default: nothing."""

    async def handle_call(self, payload: bytes) -> bytes:
        """Answer a request; the returned bytes go back to the caller.

        Default: not supported — callers get ``WorkerFailed`` saying so (the worker is not
        restarted for it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement handle_call")

    async def handle_cast(self, payload: bytes) -> None:
        """Handle a fire-and-forget message. Default: nothing."""

    async def begin_handoff(self) -> Resume | Restart | Ignore:
        """The name is moving to another node: answer ``Resume(state)`` to carry state,
        ``Restart()`` to let the next owner start fresh, or ``Ignore()`` to stay.

        Runs in mailbox order and must answer within the runtime's ``handoff_deadline``;
        past it the worker is stopped and moves without state. Default: ``Restart()``."""
        return Restart()

    async def end_handoff(self, state: bytes) -> None:
        """On the new owner, right after ``on_start``, with the state the previous owner
        returned in ``Resume(state)``. Default: nothing."""

    async def handle_timer(self, name: str) -> None:
        """Timer ``name`` (``ctx.set_timer``) fired. Default: nothing."""

    async def handle_reminder(self, name: str, fired_at: float) -> None:
        """Durable reminder ``name`` fired for the period due at ``fired_at`` (Unix
        seconds). At least once per period: after a failover a period may fire again on
        the new owner (use ``fired_at`` to recognise it). Default: nothing."""

    async def on_stop(self, reason: StopCause) -> None:
        """The instance stops (it gets no more messages). Keep it short: the stop as a
        whole must finish within the runtime's ``fence_grace``. Default: nothing."""
