"""The worker host's side of checkpoints: ``ctx.checkpoint`` → control process → reply.

Each request gets an id; the control process answers every id once with a
``CheckpointDone`` (committed at an index, or refused). If the control process goes
away the host exits (``main`` rule 6), so no request waits forever on a lost reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from registry.client.fencing import StaleToken
from registry.core.command_types import RestartPolicy, shared_restart_policy
from registry.core.durable import StoredReminder
from registry.core.errors import LimitExceeded
from registry.core.state import Activation
from registry.v1 import host_pb2 as pb
from registry.worker.errors import CheckpointFailed


def restart_from_host(start: pb.HostStart) -> RestartPolicy | None:
    """The restart policy a ``HostStart`` carries (``None``: the host's defaults)."""
    if not start.restart_mode:
        return None
    return shared_restart_policy(
        start.restart_mode, start.max_restarts, start.restart_window, start.lazy, start.idle_after
    )


def durable_to_host(spec: Activation, start: pb.HostStart) -> None:
    """Fill ``start``'s restart policy and reminders from ``spec``."""
    if spec.restart is not None:
        start.restart_mode = spec.restart.mode
        start.max_restarts = spec.restart.max_restarts
        start.restart_window = spec.restart.window
        start.lazy = spec.restart.lazy
        start.idle_after = spec.restart.idle_after
    for r in spec.reminders:
        start.reminders.add(reminder=r.reminder, due=r.due, every=r.every, fired=r.fired)


def reminders_from_host(start: pb.HostStart) -> tuple[StoredReminder, ...]:
    return tuple(
        StoredReminder(reminder=r.reminder, due=r.due, every=r.every, fired=r.fired)
        for r in start.reminders
    )


class HostCheckpoints:
    """Pending ``ctx.checkpoint`` requests of one host, by id."""

    def __init__(self, send: Callable[[pb.HostEvent], None]) -> None:
        self._send = send
        self._next_id = 0
        self._pending: dict[int, tuple[asyncio.Future[int], str, int]] = {}

    async def request(self, name: str, token: int, state: bytes) -> int:
        """Ask the control process to commit ``state``; its log index (or the refusal)."""
        event = pb.HostEvent()
        event.checkpoint.id = self._next_id = self._next_id + 1
        event.checkpoint.name, event.checkpoint.token = name, token
        event.checkpoint.state = state
        return await self._ask(event, self._next_id, name, token)

    async def remind(
        self, name: str, token: int, reminder: str, op: str, due: float, every: float, period: int
    ) -> int:
        """Ask the control process to commit a ``Remind``; its log index (or the refusal)."""
        event = pb.HostEvent()
        event.remind.id = self._next_id = self._next_id + 1
        r = event.remind
        r.name, r.token, r.reminder, r.op = name, token, reminder, op
        r.due, r.every, r.period = due, every, period
        return await self._ask(event, self._next_id, name, token)

    async def _ask(self, event: pb.HostEvent, id: int, name: str, token: int) -> int:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[id] = (future, name, token)
        self._send(event)
        try:
            return await future
        finally:
            self._pending.pop(id, None)

    def done(self, reply: pb.CheckpointDone) -> None:
        """The control process's answer to request ``reply.id``."""
        pending = self._pending.pop(reply.id, None)
        if pending is None or pending[0].done():
            return  # the activation stopped meanwhile (its hook was cancelled)
        future, name, token = pending
        if not reply.error:
            future.set_result(reply.index)
        elif reply.error == "stale_token":
            future.set_exception(StaleToken(name, token, reply.current_token))
        elif reply.error == "too_large":
            future.set_exception(LimitExceeded("STATE_TOO_LARGE", reply.message))
        else:
            future.set_exception(CheckpointFailed(name, reply.message))
