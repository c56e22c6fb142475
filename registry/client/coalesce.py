"""Concurrent ``Client.register`` calls share one ``RegisterMany`` (write coalescing).

Why: a grpc.aio unary call costs more CPU on each side than everything else a
registration costs (issue 21's profile: 70 % of the leader's loop was gRPC machinery at
64 registrations in flight). Like a Kafka producer's batching with ``linger.ms=0``, the
registrations a program makes while the event loop runs one round leave together.

Rules
-----
1. **No added wait.** A batch leaves on the loop turn after its first registration
   (``call_soon``), carrying every registration made before then: at most
   ``MAX_ITEMS`` names and ``MAX_BYTES`` of encoded specs; the rest start the next batch.
2. **A batch of one is the plain ``Register`` call**, so a lone write behaves exactly
   as without coalescing.
3. **All or none, then each on its own.** A batch is one log entry (``RegisterMany``).
   If it committed, every caller gets its index. If it was refused for something about
   a request (``REFUSALS``: a name taken, an invalid spec, a payload too large, a name
   the token may not write), nothing was applied, so each registration is sent again on
   its own and each caller gets the answer its own request earns. Any other failure
   (no quorum, unavailable, deadline, overloaded, disk full) is about the cluster, and
   every caller gets it as a lone write would have.
4. **Each caller keeps its own deadline.** A batch is sent with the latest deadline
   among its registrations; a caller whose own deadline passes first gets
   ``DeadlineExceeded`` with ``may_have_run=True`` (its name may still be committed).
5. **A name at most once per batch** (``RegisterMany`` refuses a name twice): a second
   registration of a name goes in another batch, as two concurrent plain calls would:
   one commits, the other gets ``NameTaken``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from registry.client.errors import (
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NameTaken,
    PayloadTooLarge,
    RegistryError,
    Unauthenticated,
)
from registry.v1 import registry_pb2 as pb

__all__ = ["MAX_BYTES", "MAX_ITEMS", "REFUSALS", "WriteCoalescer"]

MAX_ITEMS = 256
"""Names per batch (the node takes up to 10 000; past a few hundred nothing is gained)."""
MAX_BYTES = 256 << 10
"""Encoded specs per batch, bytes: well under a node's 2 MiB ``max_entry_bytes``, so a
batch of legal registrations is never refused for its size alone."""
REFUSALS: tuple[type[RegistryError], ...] = (
    NameTaken,
    InvalidArgument,
    FailedPrecondition,
    PayloadTooLarge,
    Unauthenticated,
)
"""Rule 3: failures that say something about one of the requests, not about the cluster."""

SendOne = Callable[[pb.NameSpec, float], Awaitable[int]]
"""Register one spec by the plain ``Register`` call, by this deadline; its log index."""
SendMany = Callable[[list[pb.NameSpec], float], Awaitable[int]]
"""Register specs in one ``RegisterMany`` entry, by this deadline; its log index."""


@dataclass(slots=True)
class _Pending:
    spec: pb.NameSpec
    deadline: float
    size: int
    result: asyncio.Future[int]


class WriteCoalescer:
    """Batches the registrations of one ``Client`` (rules in the module docstring)."""

    def __init__(self, send_one: SendOne, send_many: SendMany) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._queue: list[_Pending] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0
        """Batches sent as ``RegisterMany`` (for the client's stats)."""
        self.batched = 0
        """Registrations those batches carried."""
        self.resent = 0
        """Registrations sent again on their own after their batch was refused."""

    async def register(self, spec: pb.NameSpec, deadline: float) -> int:
        loop = asyncio.get_running_loop()
        item = _Pending(spec, deadline, spec.ByteSize(), loop.create_future())
        self._queue.append(item)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        # Cancelling the caller cancels ``result``: if its batch has not left yet, the
        # registration is dropped; if it has, its answer is dropped.
        return await item.result

    async def close(self) -> None:
        """Wait for the batches in flight (their callers are answered either way)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch, self._queue = self._take(self._queue)
            self._spawn(self._send(batch))

    @staticmethod
    def _take(queue: list[_Pending]) -> tuple[list[_Pending], list[_Pending]]:
        """The next batch (rules 1 and 5) and what is left for the ones after it."""
        batch: list[_Pending] = []
        rest: list[_Pending] = []
        names: set[str] = set()
        size = 0
        for item in queue:
            fits = len(batch) < MAX_ITEMS and (not batch or size + item.size <= MAX_BYTES)
            if fits and item.spec.name not in names:
                batch.append(item)
                names.add(item.spec.name)
                size += item.size
            else:
                rest.append(item)
        return batch, rest

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[_Pending]) -> None:
        live = [item for item in batch if not item.result.done()]
        if len(live) == 1:
            await self._alone(live[0])
            return
        if not live:
            return
        self.batches += 1
        self.batched += len(live)
        deadline = max(item.deadline for item in live)
        loop = asyncio.get_running_loop()
        timers = [loop.call_at(i.deadline, _expire, i) for i in live if i.deadline < deadline]
        refused = False
        try:
            index = await self._send_many([item.spec for item in live], deadline)
        except REFUSALS:
            refused = True
        except Exception as exc:  # rule 3: about the cluster, so everyone's answer
            for item in live:
                _settle(item.result, error=exc)
        else:
            for item in live:
                _settle(item.result, index=index)
        finally:
            for timer in timers:
                timer.cancel()
        if refused:
            live = [item for item in live if not item.result.done()]
            self.resent += len(live)
            await asyncio.gather(*(self._alone(item) for item in live))

    async def _alone(self, item: _Pending) -> None:
        try:
            index = await self._send_one(item.spec, item.deadline)
        except Exception as exc:
            _settle(item.result, error=exc)
        else:
            _settle(item.result, index=index)


def _expire(item: _Pending) -> None:
    """Rule 4: the caller's deadline passed while a batch with a later one was in flight."""
    _settle(
        item.result,
        error=DeadlineExceeded(
            f"register {item.spec.name!r}: the deadline passed while its batch was in flight",
            code="DEADLINE_EXCEEDED",
            may_have_run=True,
        ),
    )


def _settle(result: asyncio.Future[int], *, index: int = 0, error: Exception | None = None) -> None:
    if result.done():  # its caller gave up, or its own deadline passed (rule 4)
        return
    if error is not None:
        result.set_exception(error)
    else:
        result.set_result(index)
