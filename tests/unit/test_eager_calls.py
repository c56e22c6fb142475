"""Activation rule 8: a call to an idle activation starts at once, as a step of the
activation's own task and in its context, and keeps every guarantee of a call taken from
the mailbox (one message at a time, in order; the same errors, crash and stop).

Real ``WorkerRuntime`` on a real asyncio loop, each test in its own ``asyncio.run`` with
an overall timeout; waits are for conditions (events, futures), never guessed delays.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from registry.core.replica import Start, Stop, StopReason
from registry.core.state import Activation
from registry.worker import (
    Context,
    NoLease,
    NotHere,
    StartReason,
    StopCause,
    Worker,
    WorkerFailed,
    WorkerRuntime,
)
from tests.unit.async_support import on_each_loop

REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="unset")


class Seen:
    """What the workers of one test recorded, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.changed = asyncio.Event()
        self.gate = asyncio.Event()
        self.running = 0
        self.most = 0
        self.task_at_start: asyncio.Task[Any] | None = None

    def note(self, *event: str) -> None:
        self.events.append(event)
        self.changed.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            self.changed.clear()
            await self.changed.wait()


SEEN = Seen()


class Recorder(Worker):
    """Sets a context variable in ``on_start`` and answers calls with what it can see."""

    kind: ClassVar[str] = "recorder"

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        REQUEST.set(f"started {ctx.name}")
        SEEN.task_at_start = asyncio.current_task()
        SEEN.note("start", ctx.name)

    async def handle_call(self, payload: bytes) -> bytes:
        SEEN.running += 1
        SEEN.most = max(SEEN.most, SEEN.running)
        try:
            same_task = asyncio.current_task() is SEEN.task_at_start
            if payload == b"wait":
                await SEEN.gate.wait()
            elif payload == b"yield":
                await asyncio.sleep(0)
            elif payload == b"timeout-now":
                try:
                    async with asyncio.timeout(0):
                        await asyncio.sleep(1)
                except TimeoutError:
                    return b"timed out"
                return b"not timed out"
            elif payload == b"taskgroup":
                async with asyncio.TaskGroup() as group:
                    first = group.create_task(asyncio.sleep(0, result=b"a"))
                    second = group.create_task(asyncio.sleep(0, result=b"b"))
                return first.result() + second.result()
            elif payload == b"busy":
                time.sleep(0.02)  # synchronous work: the call ends within submit_call
            elif payload == b"raise":
                raise ValueError("no such thing")
            SEEN.note("call", payload.decode())
            return f"{payload.decode()} {same_task} {REQUEST.get()}".encode()
        except asyncio.CancelledError:
            SEEN.note("cancelled", payload.decode())
            raise
        finally:
            SEEN.running -= 1

    async def handle_cast(self, payload: bytes) -> None:
        SEEN.note("cast", payload.decode())

    async def on_stop(self, cause: StopCause) -> None:
        SEEN.note("stop", cause.value)


class _Reports:
    def handoff_done(self, name: str, token: int, state: bytes | None) -> None: ...
    def handoff_ignored(self, name: str, token: int) -> None: ...
    def fatal(self, reason: str) -> None:
        SEEN.note("fatal", reason)


LEASE = [True]
"""The sub-lease the runtime checks (rule 2): a test may take it away."""


async def _running() -> WorkerRuntime:
    global SEEN
    SEEN = Seen()
    LEASE[0] = True
    rt = WorkerRuntime(
        node="n1",
        kinds={"recorder": Recorder},
        reports=_Reports(),
        lease_holds=lambda: LEASE[0],
        fence_grace=0.5,
    )
    spec = Activation(
        name="r", kind="recorder", args=b"", token=1, reason=StartReason.NEW, state=None
    )
    rt.apply([Start(activation=spec)])
    await SEEN.until(lambda: ("start", "r") in SEEN.events)
    await asyncio.sleep(0)  # the task reaches its mailbox and waits there
    return rt


@on_each_loop
async def test_an_idle_activation_answers_before_submit_call_returns() -> None:
    rt = await _running()
    reply = rt.submit_call("r", b"now")
    assert reply.done(), "an idle activation's call should need no event-loop turn"
    assert reply.result() == b"now True started r"
    # Busy: the next call is queued, and runs after the one in flight, in order.
    first = rt.submit_call("r", b"wait")
    second = rt.submit_call("r", b"after")
    assert not first.done() and not second.done()
    SEEN.gate.set()
    assert await first == b"wait True started r"
    assert await second == b"after True started r"
    await rt.shutdown()


@on_each_loop
async def test_the_hook_runs_as_the_activation_task_in_its_context() -> None:
    rt = await _running()
    REQUEST.set("the caller's")  # the caller's context must not leak into the hook
    # Started at once, answered at once; started at once then carried on by the task
    # (it awaits); and queued behind that one: all three in the activation's task and
    # context, as the same hook taken from the mailbox always ran.
    now = rt.submit_call("r", b"now")
    carried = rt.submit_call("r", b"yield")
    queued = rt.submit_call("r", b"queued")
    assert now.result() == b"now True started r"
    assert await carried == b"yield True started r"
    assert await queued == b"queued True started r"
    assert REQUEST.get() == "the caller's"
    await rt.shutdown()


@on_each_loop
async def test_a_hook_that_awaits_goes_first_and_nothing_overlaps() -> None:
    rt = await _running()
    waiting = rt.submit_call("r", b"wait")
    behind = rt.submit_call("r", b"q0")  # the task has not carried the first one on yet
    await rt.cast("r", b"c1")
    queued = rt.submit_call("r", b"q1")
    await rt.cast("r", b"c2")
    for _ in range(3):
        await asyncio.sleep(0)
    assert SEEN.events[-1] == ("start", "r"), "nothing may run while the hook waits"
    SEEN.gate.set()
    assert await waiting == b"wait True started r"
    assert await behind == b"q0 True started r"
    assert await queued == b"q1 True started r"
    await SEEN.until(lambda: ("cast", "c2") in SEEN.events)
    calls = [("call", "wait"), ("call", "q0"), ("cast", "c1"), ("call", "q1"), ("cast", "c2")]
    assert SEEN.events[1:] == calls
    assert SEEN.most == 1
    await rt.shutdown()


@on_each_loop
async def test_timeouts_and_task_groups_inside_a_call_started_at_once() -> None:
    rt = await _running()
    # asyncio.timeout(0) cancels the current task on the next loop turn: before the
    # activation's task has carried the hook on. The cancel is the hook's (rule 8).
    assert await rt.submit_call("r", b"timeout-now") == b"timed out"
    assert await rt.submit_call("r", b"taskgroup") == b"ab"
    assert await rt.submit_call("r", b"now") == b"now True started r"  # still serving
    assert ("stop", "crashed") not in SEEN.events
    await rt.shutdown()


@on_each_loop
async def test_a_first_step_that_raises_answers_worker_failed_and_crashes_as_before() -> None:
    rt = await _running()
    reply = rt.submit_call("r", b"raise")
    with pytest.raises(WorkerFailed, match="ValueError: no such thing"):
        await reply
    await SEEN.until(lambda: ("stop", "crashed") in SEEN.events)
    await SEEN.until(lambda: SEEN.events.count(("start", "r")) == 2)  # restarted
    await asyncio.sleep(0)
    assert await rt.submit_call("r", b"again") == b"again True started r"
    await rt.shutdown()


@on_each_loop
async def test_a_stop_cancels_a_call_started_at_once_like_any_other() -> None:
    rt = await _running()
    waiting = rt.submit_call("r", b"wait")
    assert not waiting.done()
    rt.apply([Stop(name="r", token=1, reason=StopReason.QUORUM_LOST)])
    with pytest.raises(NotHere, match="quorum_lost"):
        await waiting
    await SEEN.until(lambda: ("stop", "quorum_lost") in SEEN.events)
    assert ("cancelled", "wait") in SEEN.events  # the hook saw the cancel, then on_stop
    assert SEEN.events.index(("cancelled", "wait")) < SEEN.events.index(("stop", "quorum_lost"))
    while rt.running():
        await asyncio.sleep(0.01)
    assert not any(e[0] == "fatal" for e in SEEN.events)
    await rt.shutdown()


@on_each_loop
async def test_a_call_answered_at_once_is_timed_from_its_submission() -> None:
    rt = await _running()
    rt.call_stats.drain()
    reply = rt.submit_call("r", b"busy")
    assert reply.done()
    await asyncio.sleep(0)
    calls = rt.call_stats.drain()["recorder"]
    assert calls.results["ok"] == 1
    assert calls.seconds >= 0.02, "the hook's own time belongs in registry_call_seconds"
    await rt.shutdown()


class NotAsync(Worker):
    kind: ClassVar[str] = "not-async"

    def handle_call(self, payload: bytes) -> bytes:  # type: ignore[override]
        return payload


@on_each_loop
async def test_a_hook_that_is_not_a_coroutine_fails_the_call_as_awaiting_it_would() -> None:
    rt = WorkerRuntime(
        node="n1", kinds={"not-async": NotAsync}, reports=_Reports(), lease_holds=lambda: True
    )
    spec = Activation(
        name="s", kind="not-async", args=b"", token=1, reason=StartReason.NEW, state=None
    )
    rt.apply([Start(activation=spec)])
    for _ in range(3):
        await asyncio.sleep(0)  # started, waiting on its mailbox
    with pytest.raises(WorkerFailed, match="can't be used in 'await' expression"):
        await rt.submit_call("s", b"x")
    await rt.shutdown()


@on_each_loop
async def test_an_idle_activation_without_its_lease_runs_nothing() -> None:
    rt = await _running()
    assert await rt.submit_call("r", b"before") == b"before True started r"
    LEASE[0] = False  # the sub-lease lapsed while the activation waited, idle
    with pytest.raises(NoLease):
        await rt.submit_call("r", b"after")
    assert ("call", "after") not in SEEN.events, "a hook ran without the lease (G1)"
    LEASE[0] = True
    assert await rt.submit_call("r", b"again") == b"again True started r"
    await rt.shutdown()
