"""The control process's side of ``ctx.checkpoint``: commit through the Raft log.

Rules (the state machine's rules are in ``registry.core.durable``)
--------------------------------------------------------------------
1. A host's ``CheckpointRequest(name, token, state)`` becomes a ``Checkpoint`` command with
   a fresh ``seq`` (larger than every earlier one of this process, and than those of any
   earlier process: it starts from the wall clock in ns). The replica proposes it when
   leading, else forwards it to the leader (``Replica.propose_checkpoint``).
2. The answer comes from this node's *applied* state, never from the proposal: the
   checkpoint is committed (on a majority of fsync'd logs) once this replica has applied
   a checkpoint of ``(name, token)`` with a ``seq`` at least ours; it was refused (stale)
   once the name's token is another, it has no holder, or it is gone (then, if that is
   so before it is proposed, it is not proposed at all: tokens never come back). Whatever is
   applied is what every replica applied, so the answer is never a guess.
3. A proposal can be lost (no leader, a leader change, a dropped forward): with neither
   outcome after ``RESEND_S`` it is sent again with the same ``seq`` (applying it twice
   changes nothing), until ``COMMIT_TIMEOUT_S``; then ``unavailable``. It may still be
   applied later, which is safe: it is fenced like any other.
4. States above ``max_state_bytes`` are refused here (``too_large``) before they reach
   the log (the worker runtime checks first, too), and so are states whose entry would
   pass ``max_entry_bytes``.
5. On success the supervisor's desired spec of a live activation with that token is
   updated, so a host that dies and is restarted starts it from this checkpoint — and,
   for a ``Remind``, with the reminders as committed now (one set since the start, and
   the periods acknowledged since: neither lost nor fired again).
6. ``Quit(name, token)`` (a worker ended itself and unregisters its name) goes the same
   way: done once the name is unregistered here, refused once its token is another.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from registry.core.commands import Checkpoint, Quit, Remind
from registry.core.controls import ProposeDurable
from registry.core.durable import StoredReminder
from registry.core.state import StartReason
from registry.v1 import host_pb2 as pb

if TYPE_CHECKING:
    from registry.core.view import RegistryReader
    from registry.node.driver import Driver
    from registry.node.hosts.process import HostProcess

log = logging.getLogger("registry.checkpoints")

Durable = Checkpoint | Quit | Remind
"""The commands a worker's activation asks its node to commit."""

Outcome = int | tuple[str, str, int]
"""A committed checkpoint's log index, or ``(error, message, current token)``."""

RESEND_S = 1.0
"""How long to wait for a proposal's outcome before sending it again (rule 3)."""
COMMIT_TIMEOUT_S = 10.0
"""How long a checkpoint may take to commit before the worker hears ``unavailable``."""


class CheckpointDesk:
    """Serves one node's checkpoint requests (module rules)."""

    def __init__(
        self,
        driver: Driver,
        *,
        max_state_bytes: int,
        metrics: CollectorRegistry,
        max_entry_bytes: int = 2 << 20,
        passive_count: Callable[[], int] = lambda: 0,
    ) -> None:
        self._driver = driver
        # The entry holds the state as base64 (4/3) plus a few hundred bytes of JSON:
        # never propose one over max_entry_bytes (a peer could not take it).
        self._max_state = min(max_state_bytes, (max_entry_bytes - 1024) // 4 * 3)
        self._seq = time.time_ns()
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: dict[int, tuple[Durable, asyncio.Future[Outcome]]] = {}
        """Proposed commands by seq, until this replica applies their outcome."""
        driver.listeners.on_applied.append(self._on_applied)
        self._counter = Counter(
            "registry_checkpoints_total",
            "ctx.checkpoint requests of this node's workers, by result: committed, "
            "stale_token, too_large, unavailable.",
            ["result"],
            registry=metrics,
        )
        for result in ("committed", "stale_token", "too_large", "unavailable"):
            self._counter.labels(result)
        Gauge(
            "registry_passive_activations",
            "Activations on this node with no instance now (lazy before their first "
            "message, or passivated after idle_after); registry_activations counts both.",
            registry=metrics,
        ).set_function(passive_count)
        self._fired = Counter(
            "registry_reminders_fired_total",
            "Reminder firings handled by this node's workers and committed (a period "
            "handled again after a failover counts again).",
            registry=metrics,
        )

    def serve(self, host: HostProcess, request: pb.CheckpointRequest) -> None:
        """Commit ``request`` and answer the host (with a ``CheckpointDone``)."""
        self._spawn(self._serve(host, request))

    def serve_remind(self, host: HostProcess, request: pb.RemindRequest) -> None:
        """Commit a ``Remind`` and answer the host (with a ``CheckpointDone``)."""
        self._spawn(self._serve_remind(host, request))

    async def _serve_remind(self, host: HostProcess, request: pb.RemindRequest) -> None:
        generation = host.generation
        self._seq += 1
        command = Remind(
            name=request.name,
            token=request.token,
            reminder=request.reminder,
            op=request.op,
            due=request.due,
            every=request.every,
            period=request.period,
        )
        outcome = await self._commit(command, self._seq)
        reply = pb.CheckpointDone(id=request.id)
        if isinstance(outcome, int):
            reply.index = outcome
            if command.op == "fired":
                self._fired.inc()
            spec = host.desired.get(command.name)
            if spec is not None and spec.token == command.token:  # rule 5, for reminders
                reminders = self._driver.view.state.reminders_of(command.name)
                host.desired[command.name] = dataclasses.replace(spec, reminders=reminders)
        else:
            reply.error, reply.message, reply.current_token = outcome
        if host.generation == generation and host.connected:
            host.send(pb.HostCommand(checkpoint_done=reply))

    def quit(self, name: str, token: int) -> None:
        """Unregister ``name`` for its activation ``token``, which ended itself (rule 6)."""
        self._spawn(self._quit(name, token))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quit(self, name: str, token: int) -> None:
        self._seq += 1
        outcome = await self._commit(Quit(name=name, token=token), self._seq)
        if not isinstance(outcome, int):
            log.warning("%s (token %d) ended itself; not unregistered: %s", name, token, outcome[1])

    async def _serve(self, host: HostProcess, request: pb.CheckpointRequest) -> None:
        generation = host.generation
        reply = pb.CheckpointDone(id=request.id)
        name, token = request.name, request.token
        if len(request.state) > self._max_state:
            reply.error = "too_large"
            reply.message = (
                f"checkpoint of {name!r} is {len(request.state)} bytes, over the "
                f"{self._max_state}-byte limit (max_state_bytes)"
            )
        else:
            outcome = await self.commit(name, token, request.state)
            if isinstance(outcome, int):
                reply.index = outcome
                spec = host.desired.get(name)
                if spec is not None and spec.token == token:
                    host.desired[name] = dataclasses.replace(
                        spec,
                        reason=StartReason.RESTART,
                        state=request.state,
                        restored_from=outcome,
                    )
            else:
                reply.error, reply.message, reply.current_token = outcome
        self._counter.labels(reply.error or "committed").inc()
        if host.generation == generation and host.connected:
            host.send(pb.HostCommand(checkpoint_done=reply))

    async def commit(self, name: str, token: int, state: bytes) -> Outcome:
        """The checkpoint's log index, or ``(error, message, current token)``."""
        self._seq += 1
        command = Checkpoint(name=name, token=token, seq=self._seq, state=state)
        return await self._commit(command, command.seq)

    async def _commit(self, command: Durable, seq: int) -> Outcome:
        if (stale := self._outcome(command)) is not None:
            return stale  # superseded already: spare the log an entry it would refuse
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting[seq] = (command, future)
        deadline = time.monotonic() + COMMIT_TIMEOUT_S
        try:
            while (wait := min(RESEND_S, deadline - time.monotonic())) > 0:
                self._driver.submit(ProposeDurable(command=command))
                with contextlib.suppress(TimeoutError):
                    return await asyncio.wait_for(asyncio.shield(future), wait)
        finally:
            self._waiting.pop(seq, None)
        why = f"not committed within {COMMIT_TIMEOUT_S:g} s (no leader or no quorum)"
        return ("unavailable", why, command.token)

    def _on_applied(self, _ready: object) -> None:
        for command, future in list(self._waiting.values()):
            outcome = self._outcome(command)
            if outcome is not None and not future.done():
                future.set_result(outcome)

    def _outcome(self, command: Durable) -> Outcome | None:
        state = self._driver.view.state
        record = state.registered(command.name)
        if isinstance(command, Quit) and record is None:
            return 0  # unregistered (by this Quit, or anyway)
        if record is None or not record.holder or record.token != command.token:
            current = record.token if record is not None else 0
            why = (
                f"{type(command).__name__} of {command.name!r} from token {command.token} "
                f"refused: the name's current token is {current or 'none (not registered)'}"
            )
            return ("stale_token", why, current)
        if isinstance(command, Quit):
            return None
        if isinstance(command, Remind):
            return reminder_outcome(command, state.reminders_of(command.name), state)
        kept = state.checkpoint_of(command.name)
        if kept is not None and kept.token == command.token and kept.seq >= command.seq:
            return kept.index
        return None


def reminder_outcome(
    command: Remind, kept: tuple[StoredReminder, ...], state: RegistryReader
) -> Outcome | None:
    """Whether this replica has applied ``command`` (the name is current: checked)."""
    mine = next((r for r in kept if r.reminder == command.reminder), None)
    if command.op == "set":
        done = mine is not None and (mine.due, mine.every) == (command.due, command.every)
    elif command.op == "cancel":
        done = mine is None
    else:
        done = mine is None or mine.fired >= command.period
    return state.applied_index if done else None
