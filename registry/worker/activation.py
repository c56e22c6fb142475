"""One activation: a worker instance, its mailbox, and the task that serves it.

Rules
-----
1. One task per activation; it takes one mailbox message at a time (GenServer). Calls,
   casts and handoff requests share the mailbox, so a handoff sees every earlier message.
2. The lease is checked before each call or cast is dispatched; without it the worker
   never sees the message: a call fails with ``NoLease``, a cast is dropped and logged.
3. A hook that raises ends the instance: the caller of that call gets ``WorkerFailed``,
   the instance gets ``on_stop(CRASHED)``, and a new instance starts (``RESTART``, no
   state) after an exponential backoff with jitter. Queued messages wait for it. More
   than ``max_restarts`` crashes within ``restart_window`` → ``FAILED``: no more
   restarts, queued and later calls fail with ``WorkerFailed("restarted too often …")``.
4. A stop cancels the running hook, fails every queued message with ``NotHere``, calls
   ``on_stop(cause)`` and ends the task. If the task has not ended ``fence_grace``
   seconds after the stop was requested, the owner is told (``on_overrun``): the node
   must exit, because a worker it cannot stop may break single activation (G1).
5. A handoff request waits its turn in the mailbox, then asks ``begin_handoff``.
   ``Ignore`` keeps serving. ``Resume``/``Restart`` (or an exception) stop the instance
   with ``HANDOFF``; the owner reports ``handoff_done`` only once the task has ended.
   If ``handoff_deadline`` passes first, the activation is stopped as in rule 4, and
   moves without state unless ``begin_handoff`` had already answered.
6. A stop requested for any other cause cancels a pending handoff report: the core
   already stopped counting on it.
7. The mailbox is bounded (``Policy.mailbox_limit`` messages, ``mailbox_bytes`` payload
   bytes): a call or cast over the bound is refused with ``MailboxFull``, never queued.
   A call whose caller gave up (its deadline passed) leaves the mailbox at once and is
   never run.
8. A call that finds the activation idle (its task waiting on an empty mailbox, nothing
   running, the lease held) starts at once: ``handle_call``'s first step runs inside
   ``submit_call``, as a step of the activation's own task and in its context
   (``registry.worker.eager``), so a hook that answers without waiting costs no
   event-loop turn. If the hook awaits, the task carries it on before any later
   message, and a cancel that reaches the task first is thrown into the hook. Rules 1-4
   hold as for a call taken from the mailbox: one message at a time, the lease checked
   first, the same ``WorkerFailed`` and crash on an exception, the same cancel on a stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from registry.core.errors import LimitExceeded
from registry.core.state import Activation, StartReason
from registry.worker.api import Context, Ignore, Restart, Resume, StopCause, Worker
from registry.worker.eager import CarryOn, Done, Raised, Suspended, first_step
from registry.worker.errors import CallTimeout, MailboxFull, NoLease, NotHere, WorkerFailed
from registry.worker.policy import ActivationState, Policy
from registry.worker.timers import Schedule, Tick

LEASE_RETRY_S = 0.05
"""How soon a reminder period that met no sub-lease is tried again."""

log = logging.getLogger("registry.worker")


@dataclass(slots=True, eq=False)
class _Call:
    payload: bytes
    reply: asyncio.Future[bytes]


@dataclass(slots=True, eq=False)
class _Cast:
    payload: bytes


class _Handoff:
    __slots__ = ()


@dataclass(slots=True, eq=False)
class _Started:
    """A call started at once (rule 8) whose first step awaited or raised: the task
    carries it on before any other message."""

    call: _Call
    step: Suspended | Raised


class _Wakeup:
    """``asyncio.Event`` for the one task that waits on it (the activation's): no waiter
    list to keep, one future per sleep. It is on every call's path."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None


class _Passivate:
    __slots__ = ()


_Message = _Call | _Cast | _Handoff | _Passivate | Tick

Reminder = Callable[[str, int, str, str, float, float, int], Awaitable[int]]
"""Commits a ``Remind(name, token, reminder, op, due, every, period)``; its log index."""

Checkpointer = Callable[[str, int, bytes], Awaitable[int]]
"""Commits ``(name, token, state)`` as a checkpoint; returns its log index (raises
``StaleToken``, ``CheckpointFailed``)."""


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _settle(reply: asyncio.Future[bytes], error: BaseException | None, result: bytes = b"") -> None:
    if reply.done():
        return  # the caller timed out or went away
    if error is not None:
        reply.set_exception(error)
    else:
        reply.set_result(result)


@dataclass(slots=True, eq=False)
class RunnerHooks:
    """What every activation of one runtime shares: built once, not per activation
    (a host starting 100k activations spent a fifth of its time passing these)."""

    node: str
    policy: Policy
    lease_holds: Callable[[], bool]
    rng: random.Random
    on_ignored: Callable[[ActivationRunner], None]
    on_overrun: Callable[[ActivationRunner], None]
    on_ended: Callable[[ActivationRunner], None]
    checkpoint: Checkpointer | None = None
    on_quit: Callable[[ActivationRunner], None] | None = None
    remind: Reminder | None = None
    on_activity: Callable[[ActivationRunner, bool], None] | None = None
    _policies: dict[tuple[int, float], Policy] = field(default_factory=dict)

    def policy_for(self, max_restarts: int, restart_window: float) -> Policy:
        """The node's policy with a registration's restart limits (one per pair)."""
        key = (max_restarts, restart_window)
        policy = self._policies.get(key)
        if policy is None:
            policy = replace(self.policy, max_restarts=max_restarts, restart_window=restart_window)
            self._policies[key] = policy
        return policy


class ActivationRunner:
    """Runs one activation (see the module rules). Owned by ``WorkerRuntime``."""

    __slots__ = (
        "_acks",
        "_backing_off",
        "_cls",
        "_crashes",
        "_fence_timer",
        "_finishing",
        "_handoff_pending",
        "_handoff_timer",
        "_hooks",
        "_idle_after",
        "_idle_timer",
        "_in_flight",
        "_instance",
        "_last_active",
        "_last_checkpoint",
        "_mailbox",
        "_mode",
        "_parked",
        "_passive",
        "_policy",
        "_queued_bytes",
        "_quit_request",
        "_schedule",
        "_started",
        "_task_context",
        "_wakeup",
        "failure",
        "handoff_state",
        "last_error",
        "name",
        "report_handoff",
        "restarts",
        "spec",
        "state",
        "stop_cause",
        "task",
        "token",
    )

    def __init__(
        self,
        spec: Activation,
        hooks: RunnerHooks,
        *,
        worker_cls: type[Worker] | None,
        error: str,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.token = spec.token
        self.state = ActivationState.STARTING
        self.restarts = 0
        self.last_error = error
        self.failure = error
        """Why calls fail with ``WorkerFailed`` once ``FAILED``."""
        self.stop_cause: StopCause | None = None
        self.report_handoff = False
        """Report ``handoff_done`` when the task ends (a handoff stopped it)."""
        self.handoff_state: bytes | None = None
        self.task: asyncio.Task[None] | None = None
        self._cls = worker_cls
        self._hooks = hooks
        self._policy = hooks.policy
        self._mailbox: deque[_Message] = deque()
        self._queued_bytes = 0
        """Payload bytes of the calls and casts in ``_mailbox`` (rule 7's byte bound)."""
        self._wakeup = _Wakeup()
        self._instance: Worker | None = None
        self._in_flight: _Call | None = None
        self._parked = False
        """The task waits on an empty mailbox in ``_serve`` (rule 8's idle)."""
        self._started: _Started | None = None
        """A call started at once that the task must carry on first (rule 8)."""
        self._task_context: contextvars.Context | None = None
        """The task's ``contextvars`` context, which rule 8's first steps run in."""
        self._crashes: deque[float] | None = None
        """Recent crash times (made at the first crash: most activations never crash)."""
        self._handoff_pending = False
        self._backing_off = False
        self._finishing = False
        self._handoff_timer: asyncio.TimerHandle | None = None
        self._fence_timer: asyncio.TimerHandle | None = None
        remind = hooks.remind
        self._schedule = Schedule(
            self._put_tick,
            functools.partial(remind, spec.name, spec.token) if remind is not None else None,
        )
        self._acks: set[asyncio.Task[None]] | None = None
        """Reminder acknowledgements in flight (made at the first reminder)."""
        self._mode = spec.restart.mode if spec.restart is not None else "permanent"
        if spec.restart is not None:  # the registration's limits win over the node's
            self._policy = hooks.policy_for(spec.restart.max_restarts, spec.restart.window)
        lifecycle = spec.restart
        self._passive = lifecycle is not None and lifecycle.lazy
        """No instance until the next message (a lazy start, or passivated)."""
        self._idle_after = lifecycle.idle_after if lifecycle is not None else 0.0
        self._idle_timer: asyncio.TimerHandle | None = None
        self._last_active = 0.0
        self._quit_request: bool | None = None
        """``ctx.stop(unregister)`` was called: end after the running hook."""
        self._last_checkpoint: tuple[bytes, int] | None = None
        """The last committed checkpoint ``(state, index)``: a crashed instance restarts
        from it, as a failover would."""
        if spec.restored_from and spec.state is not None:
            self._last_checkpoint = (spec.state, spec.restored_from)
        if worker_cls is None:
            self.state = ActivationState.FAILED

    # -- queries -----------------------------------------------------------------------

    @property
    def node(self) -> str:
        return self._hooks.node

    @property
    def finished(self) -> bool:
        """No task runs any code of this activation (never started, ended, or failed)."""
        return self.task is None or self.task.done()

    def _check_accepting(self) -> None:
        if self.state is ActivationState.FAILED:
            raise WorkerFailed(self.name, self.failure)
        if self.stop_cause is not None:
            raise NotHere(self.name, f"stopping: {self.stop_cause.value}")

    # -- requests from the runtime -----------------------------------------------------

    def start(self) -> None:
        """Spawn the task (a no-op for an activation that failed before it started)."""
        if self.state is not ActivationState.FAILED and self.task is None:
            loop = asyncio.get_running_loop()
            self._task_context = context = contextvars.copy_context()
            self.task = loop.create_task(
                self._main(), name=f"worker {self.name}#{self.token}", context=context
            )
            self.task.add_done_callback(self._ended)
            for reminder in self.spec.reminders:
                self._schedule.start_reminder(reminder)

    async def call(self, payload: bytes, timeout: float) -> bytes:
        """Queue a call and wait for its reply (see ``WorkerRuntime.call``)."""
        reply = self.submit_call(payload)
        try:
            return await asyncio.wait_for(reply, timeout)
        except TimeoutError:
            raise CallTimeout(self.name, timeout) from None

    def submit_call(self, payload: bytes) -> asyncio.Future[bytes]:
        """Queue a call, or start it at once (rule 8); its reply future (cancelling it
        drops a call still queued)."""
        self._check_accepting()
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[bytes] = loop.create_future()
        msg = _Call(payload, reply)
        if self._idle():
            self._start_now(msg, loop)
            return reply
        self._put(msg)

        def gave_up(f: asyncio.Future[bytes]) -> None:
            if f.cancelled():  # the caller gave up (deadline, cancel)
                with contextlib.suppress(ValueError):  # rule 7: not run, memory freed now
                    self._mailbox.remove(msg)
                    self._queued_bytes -= len(msg.payload)

        reply.add_done_callback(gave_up)
        return reply

    def _idle(self) -> bool:
        """Whether a call may start at once (rule 8)."""
        worker = self._instance
        return (
            self._parked
            and self._started is None
            and self._in_flight is None
            and not self._mailbox
            and self._quit_request is None
            and not self._handoff_pending
            and self.state is ActivationState.RUNNING
            and worker is not None
            and type(worker).handle_call is not Worker.handle_call
            and self._hooks.lease_holds()
        )

    def _start_now(self, msg: _Call, loop: asyncio.AbstractEventLoop) -> None:
        """Run ``handle_call``'s first step as a step of the waiting task (rule 8)."""
        worker, task, context = self._instance, self.task, self._task_context
        assert worker is not None and task is not None and context is not None
        self._in_flight = msg
        step = first_step(worker.handle_call, msg.payload, task, context)
        if isinstance(step, Done):
            self._in_flight = None
            self._answer(msg, step.value)
            self._last_active = loop.time()
            return
        if isinstance(step, Raised):
            self._in_flight = None
            if isinstance(step.error, Exception):  # as _dispatch_call: answered, then crash
                _settle(msg.reply, WorkerFailed(self.name, _describe(step.error)))
        self._started = _Started(msg, step)
        self._wakeup.set()

    def cast(self, payload: bytes) -> None:
        """Queue a cast (see ``WorkerRuntime.cast``)."""
        self._check_accepting()
        self._put(_Cast(payload))

    def begin_handoff(self) -> None:
        """Queue a handoff request and start its deadline (rule 5)."""
        if self.stop_cause is not None or self._handoff_pending:
            log.debug("worker %s#%d: handoff already under way, or stopping", self.name, self.token)
            return
        self._handoff_pending = True
        self.report_handoff = True
        loop = asyncio.get_running_loop()
        self._handoff_timer = loop.call_later(self._policy.handoff_deadline, self._handoff_late)
        if self._backing_off or self._passive:
            # No instance to ask (it crashed and waits for its restart, or it is passive):
            # move it stateless; the next owner starts from its last checkpoint.
            self.stop(StopCause.HANDOFF)
        else:
            self._put(_Handoff())

    def stop(self, cause: StopCause) -> None:
        """Stop the activation (rule 4); idempotent. Arms the ``fence_grace`` check."""
        if cause is not StopCause.HANDOFF:
            self.report_handoff = False  # rule 6
        if self.finished:
            return
        if self.stop_cause is None:
            self.stop_cause = cause
            if self.state is not ActivationState.FAILED:
                self.state = ActivationState.STOPPING
            self._fail_pending()
            if self.task is not None and not self._finishing:
                self.task.cancel()
        if self._fence_timer is None:
            loop = asyncio.get_running_loop()
            self._fence_timer = loop.call_later(self._policy.fence_grace, self._fence_check)

    # -- the task ----------------------------------------------------------------------

    async def _main(self) -> None:
        try:  # noqa: SIM105 (contextlib.suppress: one more object per idle activation)
            await self._lifecycle()
        except asyncio.CancelledError:
            pass  # a stop: finish below
        task = asyncio.current_task()
        while task is not None and task.cancelling():
            task.uncancel()  # so that timeouts inside on_stop work normally
        await self._finish()

    async def _lifecycle(self) -> None:
        assert self._cls is not None
        state, reason = self.spec.state, self.spec.reason
        restored_from = self.spec.restored_from
        # A lazy start is passive from the start, and its owner knows it (it sent the
        # start): only later changes are reported.
        report_passive = not self._passive
        while True:
            if self._passive:
                await self._await_message(report_passive)
            report_passive = True
            self.state = ActivationState.STARTING
            worker: Worker | None = None
            try:
                worker = self._instance = self._cls()
                await worker.on_start(self._context(reason, restored_from), state)
                if reason is StartReason.HANDOFF and state is not None:
                    await worker.end_handoff(state)
                self.state = ActivationState.RUNNING
                self._arm_idle()
                await self._serve(worker)
                if self._passive and self.stop_cause is None:
                    pass  # passivated: the next message starts it from its checkpoint
                elif self._quit_request is None or self.stop_cause is not None:
                    return  # a handoff (or a stop whose cancel a hook swallowed) ended it
                elif not await self._stopped_itself(worker):
                    return
            except Exception as exc:
                if not await self._crashed(worker, exc):
                    return
            state, reason, restored_from = None, StartReason.RESTART, 0
            if self._last_checkpoint is not None:
                state, restored_from = self._last_checkpoint

    def _context(self, reason: StartReason, restored_from: int) -> Context:
        spec = self.spec
        return Context(
            name=spec.name,
            node=self._hooks.node,
            args=spec.args,
            token=spec.token,
            reason=reason,
            restored_from=restored_from,
            _checkpoint=self._checkpoint if self._hooks.checkpoint is not None else None,
            _stop=self._stop_requested,
            _schedule=self._schedule,
        )

    def _put_tick(self, tick: Tick) -> None:
        if self.stop_cause is None and self.state is not ActivationState.FAILED:
            self._mailbox.append(tick)
            self._wakeup.set()

    async def _dispatch_tick(self, worker: Worker, tick: Tick) -> None:
        if not self._hooks.lease_holds():
            if tick.reminder:
                # Not acknowledged, so still owed: a restarted host runs its activations
                # (and their missed periods) before its first sub-lease arrives. Fire it
                # once the lease is back, or leave it to the next holder if this
                # instance is stopped meanwhile (``_put_tick`` then queues nothing).
                loop = asyncio.get_running_loop()
                loop.call_later(LEASE_RETRY_S, self._put_tick, tick)
                return
            log.warning("worker %s: timer %s dropped, no lease", self.name, tick.name)
            return
        if not tick.reminder:
            await worker.handle_timer(tick.name)
            return
        await worker.handle_reminder(tick.name, tick.fired_at)
        ack = asyncio.get_running_loop().create_task(self._acknowledge(tick))
        if self._acks is None:
            self._acks = set()
        self._acks.add(ack)
        ack.add_done_callback(self._acks.discard)

    async def _acknowledge(self, tick: Tick) -> None:
        try:
            await self._schedule.acknowledge(tick)
        except Exception as exc:  # it fires again on the next holder: at least once
            log.warning("worker %s: reminder %s not acknowledged: %s", self.name, tick.name, exc)

    def _stop_requested(self, unregister: bool) -> None:
        self._quit_request = bool(self._quit_request) or unregister
        self._wakeup.set()

    async def _stopped_itself(self, worker: Worker) -> bool:
        """After ``ctx.stop``: True when a new instance should start (``permanent``)."""
        unregister, self._quit_request = bool(self._quit_request), None
        if unregister or self._mode == "temporary":
            self.stop_cause = StopCause.STOPPED  # _finish calls on_stop
            self._quit()
            return False
        self._instance = None
        self._schedule.drop_timers()
        try:
            await worker.on_stop(StopCause.STOPPED)
        except Exception as exc:
            log.error("worker %s: on_stop(STOPPED) raised", self.name, exc_info=exc)
        if self._mode == "permanent":
            return True
        self.failure = self.last_error = (
            "stopped itself (ctx.stop); a transient name is not restarted"
        )
        self.state = ActivationState.FAILED
        self._fail_pending()
        return False

    def _quit(self) -> None:
        if self._hooks.on_quit is not None:
            self._hooks.on_quit(self)

    async def _checkpoint(self, state: bytes) -> int:
        limit = self._policy.max_state_bytes
        if len(state) > limit:
            raise LimitExceeded(
                "STATE_TOO_LARGE",
                f"checkpoint of {self.name!r} is {len(state)} bytes, over the {limit}-byte "
                "limit (max_state_bytes)",
            )
        checkpoint = self._hooks.checkpoint
        assert checkpoint is not None
        index = await checkpoint(self.name, self.token, state)
        if self._last_checkpoint is None or index > self._last_checkpoint[1]:
            self._last_checkpoint = (state, index)
        return index

    async def _serve(self, worker: Worker) -> None:
        """Serve the mailbox until a handoff or a stop ends it; a hook's error propagates."""
        loop = asyncio.get_running_loop()
        while self.stop_cause is None:  # also set when a hook swallowed our cancel
            if self._started is not None:
                await self._carry_on(worker, None)
                self._last_active = loop.time()
                continue
            if not self._mailbox and self._quit_request is None:
                await self._park(worker)
                continue
            if self._quit_request is not None:
                return
            msg = self._mailbox.popleft()
            if isinstance(msg, _Call | _Cast):
                self._queued_bytes -= len(msg.payload)
            if isinstance(msg, _Handoff):
                if await self._handoff(worker):
                    return
            elif isinstance(msg, _Call):
                await self._dispatch_call(worker, msg)
            elif isinstance(msg, Tick):
                await self._dispatch_tick(worker, msg)
            elif isinstance(msg, _Passivate):
                if await self._passivate(worker):
                    return
            elif not self._hooks.lease_holds():
                log.warning(
                    "worker %s: dropped a cast, node %s holds no lease", self.name, self.node
                )
            else:
                await worker.handle_cast(msg.payload)
            self._last_active = asyncio.get_running_loop().time()

    async def _await_message(self, report: bool) -> None:
        self.state = ActivationState.PASSIVE
        if report:
            self._activity(False)
        while not self._mailbox:
            self._wakeup.clear()
            await self._wakeup.wait()
        self._passive = False
        self._activity(True)

    def _activity(self, active: bool) -> None:
        if self._hooks.on_activity is not None:
            self._hooks.on_activity(self, active)

    def _arm_idle(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._idle_after > 0:
            loop = asyncio.get_running_loop()
            self._last_active = loop.time()
            self._idle_timer = loop.call_later(self._idle_after, self._idle_check)

    def _idle_check(self) -> None:
        if self.stop_cause is not None or self.state is not ActivationState.RUNNING:
            self._idle_timer = None
            return
        loop = asyncio.get_running_loop()
        due = self._last_active + self._idle_after
        if loop.time() >= due and not self._mailbox:
            self._idle_timer = None
            self._mailbox.append(_Passivate())
            self._wakeup.set()
        else:
            self._idle_timer = loop.call_at(max(due, loop.time() + 0.01), self._idle_check)

    async def _passivate(self, worker: Worker) -> bool:
        """Idle: capture ``begin_handoff``'s state into a checkpoint and end the instance;
        True when it ended. A message that arrived meanwhile, ``Ignore()``, or a
        checkpoint that fails keep it running."""
        if self._mailbox:
            self._arm_idle()
            return False
        answer = await worker.begin_handoff()
        if isinstance(answer, Ignore):
            self._arm_idle()
            return False
        if isinstance(answer, Resume) and self._hooks.checkpoint is not None:
            state = self._policy.admit_state(self.name, answer.state)
            try:
                if state is not None:
                    await self._checkpoint(state)
            except Exception as exc:
                log.warning("worker %s: not passivated, checkpoint failed: %s", self.name, exc)
                self._arm_idle()
                return False
        self._instance = None
        self._schedule.drop_timers()
        try:
            await worker.on_stop(StopCause.PASSIVATED)
        except Exception as exc:
            log.error("worker %s: on_stop(PASSIVATED) raised", self.name, exc_info=exc)
        self._passive = True
        return True

    async def _park(self, worker: Worker) -> None:
        """Wait for a message, or a call started at once (rule 8): a cancel that comes
        before the task could carry that call on was meant for its hook."""
        self._wakeup.clear()
        self._parked = True
        try:
            await self._wakeup.wait()
        except asyncio.CancelledError as cancel:
            self._parked = False
            if self._started is None:
                raise
            await self._carry_on(worker, cancel)
            self._last_active = asyncio.get_running_loop().time()
        finally:
            self._parked = False

    async def _carry_on(self, worker: Worker, cancel: BaseException | None) -> None:
        """Go on with the call started at once (rule 8); ``cancel`` reached the task
        before it could, and is thrown into the hook."""
        started, self._started = self._started, None
        assert started is not None
        if isinstance(started.step, Raised):
            raise started.step.error  # the hook's own error, as _dispatch_call raises it
        resume = CarryOn(started.step.coro, started.step.yielded, cancel)
        await self._dispatch_call(worker, started.call, resume)

    async def _dispatch_call(
        self, worker: Worker, msg: _Call, resume: CarryOn | None = None
    ) -> None:
        """Run ``msg`` (or carry on the one started at once: ``resume``) and answer."""
        if resume is None:
            if msg.reply.done():
                return  # the caller gave up while it was queued
            if not self._hooks.lease_holds():
                _settle(msg.reply, NoLease(self.node))
                return
            if type(worker).handle_call is Worker.handle_call:
                why = f"worker kind {type(worker).kind!r} does not handle calls (no handle_call)"
                _settle(msg.reply, WorkerFailed(self.name, why))
                return
        self._in_flight = msg
        try:
            result: object = await (worker.handle_call(msg.payload) if resume is None else resume)
        except Exception as exc:
            _settle(msg.reply, WorkerFailed(self.name, _describe(exc)))
            raise
        finally:
            self._in_flight = None
        self._answer(msg, result)

    def _answer(self, msg: _Call, result: object) -> None:
        if type(result) is bytes:  # the usual answer, without a union isinstance check
            _settle(msg.reply, None, result)
        elif isinstance(result, bytes | bytearray | memoryview):
            _settle(msg.reply, None, bytes(result))
        else:
            why = f"handle_call returned {type(result).__name__}, expected bytes"
            log.error("worker %s: %s", self.name, why)
            _settle(msg.reply, WorkerFailed(self.name, why))

    async def _handoff(self, worker: Worker) -> bool:
        """Ask ``begin_handoff``; True when the instance must stop (rule 5)."""
        self.state = ActivationState.HANDING_OFF
        try:
            answer: object = await worker.begin_handoff()
        except Exception as exc:
            log.error(
                "worker %s: begin_handoff raised; it moves without state", self.name, exc_info=exc
            )
            answer = Restart()
        if self.stop_cause is not None:
            return True  # stopped meanwhile (the hook swallowed the cancel): no answer counts
        if isinstance(answer, Ignore):
            self._handoff_pending = False
            self.report_handoff = False
            if self._handoff_timer is not None:
                self._handoff_timer.cancel()
            self.state = ActivationState.RUNNING
            self._hooks.on_ignored(self)
            return False
        if isinstance(answer, Resume):
            self.handoff_state = self._policy.admit_state(self.name, answer.state)
        elif not isinstance(answer, Restart):
            log.error(
                "worker %s: begin_handoff returned %r, expected Resume, Restart or Ignore; "
                "it moves without state",
                self.name,
                answer,
            )
        self.stop_cause = StopCause.HANDOFF
        return True

    async def _crashed(self, worker: Worker | None, exc: Exception) -> bool:
        """Handle a hook's exception (rule 3); True when a new instance should start."""
        self.last_error = _describe(exc)
        self._instance = None
        self._schedule.drop_timers()  # timers belong to the instance (timers rule 1)
        log.error("worker %s#%d crashed: %s", self.name, self.token, self.last_error, exc_info=exc)
        if worker is not None:
            try:
                await worker.on_stop(StopCause.CRASHED)
            except Exception as stop_exc:
                log.error("worker %s: on_stop(CRASHED) raised", self.name, exc_info=stop_exc)
        if self._handoff_pending and self.stop_cause is None:
            self.stop_cause = StopCause.HANDOFF  # it was moving anyway: move it, stateless
        if self.stop_cause is not None:
            return False
        if self._mode == "temporary":
            self.failure = self.last_error = (
                f"crashed ({self.last_error}); a temporary name is not restarted"
            )
            self.state = ActivationState.FAILED
            self._quit()
            return False
        now = asyncio.get_running_loop().time()
        if self._crashes is None:
            self._crashes = deque()
        recent = self._crashes
        recent.append(now)
        while recent[0] < now - self._policy.restart_window:
            recent.popleft()
        crashes, policy = len(recent), self._policy
        if crashes > policy.max_restarts:
            self.failure = (
                f"restarted too often ({crashes} crashes within {policy.restart_window:g} s, "
                f"limit {policy.max_restarts}); last error: {self.last_error}"
            )
            self.last_error = self.failure
            self.state = ActivationState.FAILED
            log.error("worker %s#%d: %s; giving up", self.name, self.token, self.failure)
            return False
        delay = policy.backoff(crashes, self._hooks.rng)
        log.info("worker %s#%d restarts in %.3f s", self.name, self.token, delay)
        self.state = ActivationState.STARTING
        self._backing_off = True
        try:
            await asyncio.sleep(delay)
        finally:
            self._backing_off = False
        self.restarts += 1
        return True

    async def _finish(self) -> None:
        self._finishing = True
        self._schedule.close()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
        if self.state is not ActivationState.FAILED:
            self.state = ActivationState.STOPPING
        self._fail_pending()
        worker, self._instance = self._instance, None
        if worker is not None:
            cause = self.stop_cause or StopCause.SHUTDOWN
            try:
                await worker.on_stop(cause)
            except Exception as exc:
                log.error("worker %s: on_stop(%s) raised", self.name, cause.name, exc_info=exc)

    # -- helpers -----------------------------------------------------------------------

    def _put(self, msg: _Message) -> None:
        if isinstance(msg, _Call | _Cast):  # a handoff request is never refused
            self._check_room(msg)
            self._queued_bytes += len(msg.payload)
        self._mailbox.append(msg)
        self._wakeup.set()

    def _check_room(self, msg: _Call | _Cast) -> None:
        policy = self._policy
        if len(self._mailbox) >= policy.mailbox_limit:
            raise MailboxFull(self.name, f"{len(self._mailbox)} messages queued (the bound)")
        queued = self._queued_bytes
        if queued + len(msg.payload) > policy.mailbox_bytes:
            raise MailboxFull(
                self.name,
                f"{queued} bytes queued, {len(msg.payload)} more would pass the "
                f"{policy.mailbox_bytes}-byte bound",
            )

    def _fail_pending(self) -> None:
        """Fail the in-flight call and every queued message (rules 3 and 4)."""
        if self.state is ActivationState.FAILED:
            error: Exception = WorkerFailed(self.name, self.failure)
        else:
            why = self.stop_cause.value if self.stop_cause else "stopped"
            error = NotHere(self.name, f"stopping: {why}")
        if self._in_flight is not None:
            _settle(self._in_flight.reply, error)
        while self._mailbox:
            msg = self._mailbox.popleft()
            if isinstance(msg, _Call):
                _settle(msg.reply, error)
        self._queued_bytes = 0

    def _handoff_late(self) -> None:
        if self.finished:
            return
        log.warning(
            "worker %s#%d: handoff not done within handoff_deadline %g s; stopping it",
            self.name,
            self.token,
            self._policy.handoff_deadline,
        )
        self.stop(StopCause.HANDOFF)

    def _fence_check(self) -> None:
        if not self.finished:
            self._hooks.on_overrun(self)

    def _ended(self, task: asyncio.Task[None]) -> None:
        for timer in (self._handoff_timer, self._fence_timer):
            if timer is not None:
                timer.cancel()
        if self.state is not ActivationState.FAILED:
            self.state = ActivationState.STOPPING
        self._fail_pending()  # also covers a task cancelled before it ever ran
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("worker %s: runtime error", self.name, exc_info=exc)
        self._hooks.on_ended(self)
