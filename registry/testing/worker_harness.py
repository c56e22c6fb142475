"""Unit-test a ``Worker``'s hooks in-process, without a cluster: ``WorkerHarness``.

It drives one name's activations the way a node's runtime does, minus the network and
the timing:

- ``start()`` makes an instance (``cls()``) and runs ``on_start(ctx, state)``, then
  ``end_handoff(state)`` when it starts from a handoff with state — the runtime's order.
- ``call`` / ``cast`` run ``handle_call`` / ``handle_cast`` one at a time (a lock stands in
  for the mailbox), so a test sees the same one-message-at-a-time guarantee.
- ``handoff()`` asks ``begin_handoff``: ``Ignore`` keeps the instance; ``Resume(state)``
  stops it (``on_stop(HANDOFF)``) and starts the next activation with reason ``HANDOFF``
  and the state (refused like the runtime does when over ``max_state_bytes``: the next
  one then starts as ``RESTART``); ``Restart`` starts it with reason ``RESTART``.
  Every new activation gets a higher fencing token, as on a cluster (G2).
- ``ctx.checkpoint(state)`` is kept in ``checkpoints`` (refused over ``max_state_bytes``
  like the runtime does); ``failover()`` drops the instance without ``on_stop`` (its node
  died) and starts the next activation with reason ``FAILOVER`` from the last checkpoint.
- ``stop(cause)`` runs ``on_stop``. A hook's exception propagates to the test (the
  runtime would restart the worker; a unit test wants to see it).

What it does not do: restarts after a crash, cancellation on a lost lease, deadlines.
Use the ``registry_cluster`` fixture (``registry.testing.pytest_plugin``) for those.

Example::

    async def test_counter_keeps_its_count_across_a_handoff() -> None:
        async with WorkerHarness(Counter, name="c1") as h:
            assert await h.call(b"incr") == b"1"
            await h.handoff()
            assert h.ctx.reason is StartReason.HANDOFF
            assert await h.call(b"incr") == b"2"
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from registry.core.errors import LimitExceeded
from registry.core.state import StartReason
from registry.worker.api import Context, Ignore, Restart, Resume, StopCause, Worker
from registry.worker.policy import Policy

__all__ = ["WorkerHarness"]

W = TypeVar("W", bound=Worker)


class WorkerHarness(Generic[W]):
    """One name's activations of worker class ``cls``; see the module docstring."""

    def __init__(
        self,
        cls: type[W],
        *,
        name: str = "test-worker",
        node: str = "n1",
        args: bytes = b"",
        max_state_bytes: int = 1 << 20,
    ) -> None:
        self.cls = cls
        self.name = name
        self.node = node
        self.args = args
        self._policy = Policy(max_state_bytes=max_state_bytes).validate()
        self.token = 0
        """The fencing token of the current (or last) activation; 0 before ``start``."""
        self.stops: list[StopCause] = []
        """Every ``on_stop`` cause so far, oldest first."""
        self._worker: W | None = None
        self._ctx: Context | None = None
        self._mailbox = asyncio.Lock()
        self.checkpoints: list[tuple[int, bytes]] = []
        """``(log index, state)`` of every ``ctx.checkpoint``, oldest first."""

    async def __aenter__(self) -> WorkerHarness[W]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._worker is not None:
            await self.stop(StopCause.SHUTDOWN)

    @property
    def worker(self) -> W:
        """The running instance (fails before ``start`` or after ``stop``)."""
        if self._worker is None:
            raise RuntimeError(f"{self.name}: no running instance (start it first)")
        return self._worker

    @property
    def ctx(self) -> Context:
        """The ``Context`` the running instance was started with."""
        self.worker  # noqa: B018 - the same check
        assert self._ctx is not None
        return self._ctx

    async def start(
        self,
        reason: StartReason = StartReason.NEW,
        state: bytes | None = None,
        *,
        restored_from: int = 0,
    ) -> W:
        """Start a new activation (next token) with ``reason`` and ``state``."""
        if self._worker is not None:
            raise RuntimeError(f"{self.name}: already running; stop or hand it off first")
        self.token += 1
        ctx = Context(
            name=self.name,
            node=self.node,
            args=self.args,
            token=self.token,
            reason=reason,
            restored_from=restored_from,
            _checkpoint=self._checkpoint,
        )
        worker = self.cls()
        await worker.on_start(ctx, state)
        if reason is StartReason.HANDOFF and state is not None:
            await worker.end_handoff(state)
        self._worker, self._ctx = worker, ctx
        return worker

    async def _checkpoint(self, state: bytes) -> int:
        limit = self._policy.max_state_bytes
        if len(state) > limit:
            raise LimitExceeded("STATE_TOO_LARGE", f"{len(state)} bytes, over {limit}")
        index = (self.checkpoints[-1][0] if self.checkpoints else self.token * 1000) + 1
        self.checkpoints.append((index, state))
        return index

    async def failover(self) -> W:
        """Lose the running instance as a killed node would (no ``on_stop``) and start
        the next activation with reason ``FAILOVER`` from the last checkpoint."""
        self.worker  # noqa: B018 - fails when nothing runs
        self._worker = self._ctx = None
        index, state = self.checkpoints[-1] if self.checkpoints else (0, None)
        return await self.start(StartReason.FAILOVER, state, restored_from=index)

    async def call(self, payload: bytes) -> bytes:
        """``handle_call(payload)``, after any message before it."""
        async with self._mailbox:
            return await self.worker.handle_call(payload)

    async def cast(self, payload: bytes) -> None:
        """``handle_cast(payload)``, after any message before it."""
        async with self._mailbox:
            await self.worker.handle_cast(payload)

    async def stop(self, cause: StopCause = StopCause.SHUTDOWN) -> None:
        """``on_stop(cause)``; the instance gets no more messages."""
        worker = self.worker
        async with self._mailbox:
            self._worker = None
            self.stops.append(cause)
            await worker.on_stop(cause)

    async def handoff(self, *, to_node: str | None = None) -> Resume | Restart | Ignore:
        """Move the name (to ``to_node``, default the same node id) as a node would;
        returns what ``begin_handoff`` answered."""
        async with self._mailbox:
            answer = await self.worker.begin_handoff()
        if isinstance(answer, Ignore):
            return answer
        await self.stop(StopCause.HANDOFF)
        self.node = to_node or self.node
        # The runtime's own rule: a state that is not bytes, or too large, is dropped.
        state = (
            self._policy.admit_state(self.name, answer.state)
            if isinstance(answer, Resume)
            else None
        )
        await self.start(StartReason.HANDOFF if state is not None else StartReason.RESTART, state)
        return answer
