"""The worker host's side of checkpoints: ``ctx.checkpoint`` → control process → reply.

Each request gets an id; the control process answers every id once with a
``CheckpointDone`` (committed at an index, or refused). If the control process goes
away the host exits (``main`` rule 6), so no request waits forever on a lost reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from registry.client.fencing import StaleToken
from registry.core.commands import RestartPolicy
from registry.core.errors import LimitExceeded
from registry.v1 import host_pb2 as pb
from registry.worker.errors import CheckpointFailed


def restart_from_host(start: pb.HostStart) -> RestartPolicy | None:
    """The restart policy a ``HostStart`` carries (``None``: the host's defaults)."""
    if not start.restart_mode:
        return None
    return RestartPolicy(
        mode=start.restart_mode, max_restarts=start.max_restarts, window=start.restart_window
    )


def restart_to_host(policy: RestartPolicy | None, start: pb.HostStart) -> None:
    """Fill ``start``'s restart fields from ``policy``."""
    if policy is not None:
        start.restart_mode = policy.mode
        start.max_restarts = policy.max_restarts
        start.restart_window = policy.window


class HostCheckpoints:
    """Pending ``ctx.checkpoint`` requests of one host, by id."""

    def __init__(self, send: Callable[[pb.HostEvent], None]) -> None:
        self._send = send
        self._next_id = 0
        self._pending: dict[int, tuple[asyncio.Future[int], str, int]] = {}

    async def request(self, name: str, token: int, state: bytes) -> int:
        """Ask the control process to commit ``state``; its log index (or the refusal)."""
        self._next_id += 1
        id = self._next_id
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending[id] = (future, name, token)
        event = pb.HostEvent()
        event.checkpoint.id, event.checkpoint.name = id, name
        event.checkpoint.token, event.checkpoint.state = token, state
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
