"""WorkerRuntime on a real asyncio loop: mailbox order, handoff, restarts, stops, fencing.

Each test runs in its own ``asyncio.run`` with an overall timeout. Tests wait for
conditions (the journal's event, or ``eventually`` for ``status()``), never for a guessed
delay: ``sleep(0)`` only yields once, and the one timed sleep checks that something does
*not* happen.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, ParamSpec

import pytest

from registry.core.errors import ConfigError
from registry.core.replica import BeginHandoff, Start, Stop, StopReason
from registry.core.state import Activation
from registry.examples import Counter, Echo
from registry.worker import (
    ActivationState,
    CallTimeout,
    Context,
    Ignore,
    NoLease,
    NotHere,
    Resume,
    StartReason,
    StopCause,
    Worker,
    WorkerFailed,
    WorkerRuntime,
)
from registry.worker.errors import MailboxFull
from registry.worker.runtime import EFFECTS_PER_TURN
from tests.unit.async_support import on_each_loop as each_loop

GRACE = 0.2
CLOCK_RESOLUTION_S = 0.001
"""fence_grace used throughout (seconds)."""


class Journal:
    """The fake ``RuntimeReports`` and the test workers' log, with one change event."""

    def __init__(self) -> None:
        self.done: list[tuple[str, int, bytes | None]] = []
        self.ignored: list[tuple[str, int]] = []
        self.fatals: list[str] = []
        self.log: list[tuple[Any, ...]] = []
        self._changed = asyncio.Event()

    def note(self, *entry: Any) -> None:
        self.log.append((*entry, asyncio.get_running_loop().time()))
        self._changed.set()

    def handoff_done(self, name: str, token: int, state: bytes | None) -> None:
        self.done.append((name, token, state))
        self._changed.set()

    def handoff_ignored(self, name: str, token: int) -> None:
        self.ignored.append((name, token))
        self._changed.set()

    def fatal(self, reason: str) -> None:
        self.fatals.append(reason)
        self.note("fatal", reason)

    def entries(self, what: str, name: str) -> list[tuple[Any, ...]]:
        return [e for e in self.log if e[0] == what and e[1] == name]

    async def until(self, condition: Callable[[], object], timeout: float = 2.0) -> None:
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()


async def eventually(condition: Callable[[], object], timeout: float = 2.0) -> None:
    """Poll a condition nothing signals (``status()``), failing after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


P = ParamSpec("P")
JOURNAL = Journal()  # replaced before each test
GATE = asyncio.Event()


def _fresh_journal() -> None:
    global JOURNAL, GATE
    JOURNAL = Journal()
    GATE = asyncio.Event()


@pytest.fixture(autouse=True)
def _fresh_for_each_test() -> None:
    _fresh_journal()


def on_each_loop(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """The runtime on both event loops, with a fresh journal and gate for each run."""
    return each_loop(fn, fresh=_fresh_journal)


class Probe(Worker):
    """Journals its lifecycle. Calls: ``block`` waits forever, ``gate`` waits for GATE,
    ``boom`` raises; anything else is echoed."""

    kind: ClassVar[str] = "probe"
    name = ""
    token = 0

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.name, self.token = ctx.name, ctx.token
        JOURNAL.note("start", ctx.name, ctx.token, ctx.reason, state)

    async def handle_call(self, payload: bytes) -> bytes:
        JOURNAL.note("busy", self.name, payload)
        if payload == b"block":
            await asyncio.Event().wait()
        if payload == b"gate":
            await GATE.wait()
        if payload == b"boom":
            raise RuntimeError("kaboom")
        return payload

    async def on_stop(self, reason: StopCause) -> None:
        JOURNAL.note("stop", self.name, self.token, reason)


class Staying(Probe):
    kind: ClassVar[str] = "staying"

    async def begin_handoff(self) -> Ignore:
        return Ignore()


class Stalling(Probe):
    kind: ClassVar[str] = "stalling"

    async def begin_handoff(self) -> Resume:
        await asyncio.Event().wait()
        return Resume(b"never")


class Bloated(Probe):
    kind: ClassVar[str] = "bloated"

    async def begin_handoff(self) -> Resume:
        return Resume(b"x" * 64)


class Stubborn(Probe):
    """Swallows cancellation until GATE opens: the worker fencing must not wait for."""

    kind: ClassVar[str] = "stubborn"

    async def handle_call(self, payload: bytes) -> bytes:
        JOURNAL.note("busy", self.name, payload)
        while not GATE.is_set():
            try:
                await GATE.wait()
            except asyncio.CancelledError:
                JOURNAL.note("swallowed", self.name)
        return b"released"


class Plain(Worker):
    kind: ClassVar[str] = "plain"


def start(
    name: str,
    kind: str,
    token: int,
    reason: StartReason = StartReason.NEW,
    state: bytes | None = None,
) -> Start:
    return Start(
        activation=Activation(
            name=name, kind=kind, args=b"", token=token, reason=reason, state=state
        )
    )


def stop(name: str, token: int, reason: StopReason = StopReason.QUORUM_LOST) -> Stop:
    return Stop(name=name, token=token, reason=reason)


def handoff(name: str, token: int) -> BeginHandoff:
    return BeginHandoff(name=name, token=token, deadline_tick=0)


def runtime(*classes: type[Worker], node: str = "n1", **options: Any) -> WorkerRuntime:
    kinds = {cls.kind: cls for cls in classes}
    lease = options.pop("lease_holds", lambda: True)
    options.setdefault("fence_grace", GRACE)
    options.setdefault("rng", random.Random(7))
    return WorkerRuntime(node=node, kinds=kinds, reports=JOURNAL, lease_holds=lease, **options)


# -- mailbox ---------------------------------------------------------------------------


@on_each_loop
async def test_mailbox_is_sequential_and_ordered() -> None:
    rt = runtime(Counter, Echo)
    rt.apply([start("c", "counter", 1), start("e", "echo", 2)])
    replies = await asyncio.gather(*(rt.call("c", b"incr", 1.0) for _ in range(50)))
    assert replies == [str(i).encode() for i in range(1, 51)]
    for _ in range(5):
        await rt.cast("c", b"incr")
    assert await rt.call("c", b"get", 1.0) == b"55"  # queued after the casts
    assert await rt.call("e", b"hello", 1.0) == b"hello"
    assert rt.running() == {"c": 1, "e": 2}
    assert (rt.token_of("c"), rt.token_of("e"), rt.token_of("nope")) == (1, 2, None)
    assert rt.status()["c"].state is ActivationState.RUNNING
    with pytest.raises(WorkerFailed, match="unknown command b'nope'"):
        await rt.call("c", b"nope", 1.0)
    await rt.shutdown()


class Overlapping(Worker):
    """Counts how many of its hooks run at once; each call yields to the loop a few
    times mid-hook, so two dispatched together would overlap."""

    kind: ClassVar[str] = "overlapping"
    active = 0
    most = 0
    seen: ClassVar[list[bytes]] = []

    async def _enter(self, payload: bytes) -> None:
        Overlapping.active += 1
        Overlapping.most = max(Overlapping.most, Overlapping.active)
        Overlapping.seen.append(payload)
        for _ in range(3):
            await asyncio.sleep(0)
        Overlapping.active -= 1

    async def handle_call(self, payload: bytes) -> bytes:
        await self._enter(payload)
        return payload

    async def handle_cast(self, payload: bytes) -> None:
        await self._enter(payload)


@on_each_loop
async def test_concurrent_calls_into_one_activation_never_overlap() -> None:
    Overlapping.active = Overlapping.most = 0
    Overlapping.seen = []
    rt = runtime(Overlapping)
    rt.apply([start("o", "overlapping", 1)])
    sent = [b"%d" % i for i in range(40)]

    async def one(i: int, payload: bytes) -> bytes:
        if i % 4 == 3:
            await rt.cast("o", payload)
            return payload
        return await rt.call("o", payload, 2.0)

    replies = await asyncio.gather(*(one(i, p) for i, p in enumerate(sent)))
    assert replies == sent
    await eventually(lambda: len(Overlapping.seen) == len(sent))
    assert Overlapping.most == 1  # one message at a time (activation rule 1)
    assert Overlapping.seen == sent  # in the order they were queued
    await rt.shutdown()


@on_each_loop
async def test_mailbox_byte_bound_counts_only_what_is_queued() -> None:
    # Room for two 40-byte calls: a third is refused; a call that leaves the mailbox (run,
    # given up) frees its bytes, every round (the running total never drifts).
    global GATE
    rt = runtime(Probe, mailbox_bytes=100)
    rt.apply([start("p", "probe", 1)])
    big = b"x" * 40

    def gates_run(n: int) -> Callable[[], bool]:
        return lambda: sum(1 for e in JOURNAL.entries("busy", "p") if e[2] == b"gate") == n

    for rounds in range(1, 4):
        GATE = asyncio.Event()
        held = asyncio.ensure_future(rt.call("p", b"gate", 2.0))
        await JOURNAL.until(gates_run(rounds))  # it runs: out of the mailbox
        gave_up = asyncio.ensure_future(rt.call("p", big, 0.05))
        queued = asyncio.ensure_future(rt.call("p", big, 2.0))
        await asyncio.sleep(0)
        with pytest.raises(MailboxFull):
            await rt.call("p", big, 2.0)
        with pytest.raises(CallTimeout):
            await gave_up
        again = asyncio.ensure_future(rt.call("p", big, 2.0))  # its room came back
        GATE.set()
        assert list(await asyncio.gather(held, queued, again)) == [b"gate", big, big]
    await rt.shutdown()


@on_each_loop
async def test_not_here_timeout_and_missing_handle_call() -> None:
    rt = runtime(Probe, Plain)
    rt.apply([start("p", "probe", 1), start("q", "plain", 2)])
    with pytest.raises(NotHere, match="'ghost'"):
        await rt.call("ghost", b"x", 1.0)
    with pytest.raises(CallTimeout):
        await rt.call("p", b"block", 0.05)
    with pytest.raises(WorkerFailed, match="does not handle calls"):
        await rt.call("q", b"x", 1.0)
    assert rt.status()["q"].restarts == 0
    assert rt.status()["q"].state is ActivationState.RUNNING
    await rt.shutdown()


@on_each_loop
async def test_no_lease_refuses_calls_and_casts() -> None:
    lease = [True]
    rt = runtime(Probe, lease_holds=lambda: lease[0])
    rt.apply([start("p", "probe", 1)])
    gated = asyncio.create_task(rt.call("p", b"gate", 1.0))
    await JOURNAL.until(lambda: JOURNAL.entries("busy", "p"))
    queued = asyncio.create_task(rt.call("p", b"later", 1.0))
    await asyncio.sleep(0)  # let it reach the mailbox
    lease[0] = False
    with pytest.raises(NoLease, match="holds no lease"):
        await rt.call("p", b"x", 1.0)
    with pytest.raises(NoLease):
        await rt.cast("p", b"x")
    GATE.set()
    assert await gated == b"gate"  # dispatched while the lease held
    with pytest.raises(NoLease):
        await queued  # the lease is checked again at dispatch
    assert [e[2] for e in JOURNAL.entries("busy", "p")] == [b"gate"]
    await rt.shutdown()


# -- handoff ---------------------------------------------------------------------------


@on_each_loop
async def test_handoff_resume_carries_the_count_to_the_next_owner() -> None:
    old = runtime(Counter)
    old.apply([start("c", "counter", 3)])
    for _ in range(3):
        await old.call("c", b"incr", 1.0)
    old.apply([handoff("c", 3)])
    with pytest.raises(NotHere):  # queued behind the handoff, which stops the worker
        await old.call("c", b"get", 1.0)
    await JOURNAL.until(lambda: JOURNAL.done)
    assert JOURNAL.done == [("c", 3, b"3")]
    assert old.running() == {}

    new = runtime(Counter, node="n2")
    new.apply([start("c", "counter", 9, reason=StartReason.HANDOFF, state=b"3")])
    assert await new.call("c", b"incr", 1.0) == b"4"
    await asyncio.gather(old.shutdown(), new.shutdown())


@on_each_loop
async def test_handoff_restart_and_ignore() -> None:
    rt = runtime(Probe, Staying)
    rt.apply([start("p", "probe", 1), start("s", "staying", 2)])
    rt.apply([handoff("p", 1), handoff("s", 2)])
    await JOURNAL.until(lambda: JOURNAL.done and JOURNAL.ignored)
    assert JOURNAL.done == [("p", 1, None)]  # default answer: Restart()
    assert JOURNAL.entries("stop", "p")[0][3] is StopCause.HANDOFF
    assert JOURNAL.ignored == [("s", 2)]
    assert await rt.call("s", b"still here", 1.0) == b"still here"
    assert rt.running() == {"s": 2}
    rt.apply([handoff("s", 2)])  # asked again after a later view change
    await JOURNAL.until(lambda: len(JOURNAL.ignored) == 2)
    await rt.shutdown()
    assert JOURNAL.done == [("p", 1, None)]


@on_each_loop
async def test_oversize_state_is_dropped_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    rt = runtime(Bloated, max_state_bytes=16)
    rt.apply([start("b", "bloated", 4), handoff("b", 4)])
    with caplog.at_level(logging.ERROR, logger="registry.worker"):
        await JOURNAL.until(lambda: JOURNAL.done)
    assert JOURNAL.done == [("b", 4, None)]
    assert any(
        "64 bytes" in r.getMessage() and "16 bytes" in r.getMessage() for r in caplog.records
    )
    await rt.shutdown()


@on_each_loop
async def test_handoff_deadline_stops_the_worker_without_state() -> None:
    rt = runtime(Stalling, Probe, handoff_deadline=0.1)
    rt.apply([start("s", "stalling", 1), start("p", "probe", 2)])
    busy = asyncio.create_task(rt.call("p", b"block", 2.0))  # the handoff waits behind it
    await JOURNAL.until(lambda: JOURNAL.entries("busy", "p"))
    began = asyncio.get_running_loop().time()
    rt.apply([handoff("s", 1), handoff("p", 2)])
    await JOURNAL.until(lambda: len(JOURNAL.done) == 2)
    assert asyncio.get_running_loop().time() - began >= 0.1 - CLOCK_RESOLUTION_S
    assert sorted(JOURNAL.done) == [("p", 2, None), ("s", 1, None)]
    with pytest.raises(NotHere):
        await busy
    assert [e[3] for e in JOURNAL.log if e[0] == "stop"] == [StopCause.HANDOFF] * 2
    assert rt.running() == {}
    assert JOURNAL.fatals == []
    await rt.shutdown()


# -- crashes ---------------------------------------------------------------------------


@on_each_loop
async def test_crash_restarts_with_backoff_then_fails() -> None:
    rt = runtime(Probe, max_restarts=2, restart_backoff=(0.02, 0.04))
    rt.apply([start("p", "probe", 5)])
    boom, after = await asyncio.gather(
        rt.call("p", b"boom", 1.0), rt.call("p", b"after", 1.0), return_exceptions=True
    )
    assert isinstance(boom, WorkerFailed) and "RuntimeError: kaboom" in str(boom)
    assert after == b"after"  # waited in the mailbox for the new instance
    assert rt.status()["p"].restarts == 1
    assert rt.status()["p"].last_error == "RuntimeError: kaboom"
    with pytest.raises(WorkerFailed):
        await rt.call("p", b"boom", 1.0)
    await JOURNAL.until(lambda: len(JOURNAL.entries("start", "p")) == 3)
    with pytest.raises(WorkerFailed):
        await rt.call("p", b"boom", 1.0)  # third crash within the window: more than 2
    await eventually(lambda: rt.status()["p"].state is ActivationState.FAILED)

    starts, stops = JOURNAL.entries("start", "p"), JOURNAL.entries("stop", "p")
    assert [s[3] for s in starts] == [StartReason.NEW, StartReason.RESTART, StartReason.RESTART]
    assert [s[3] for s in stops] == [StopCause.CRASHED] * 3
    # Backoff doubles per recent crash, times a jitter in [0.5, 1): ≥ 0.01 s, then ≥ 0.02 s.
    assert starts[1][-1] - stops[0][-1] >= 0.01
    assert starts[2][-1] - stops[1][-1] >= 0.02
    status = rt.status()["p"]
    assert status.restarts == 2
    assert "restarted too often" in status.last_error
    with pytest.raises(WorkerFailed, match="restarted too often"):
        await rt.call("p", b"x", 1.0)
    assert rt.running() == {}
    await rt.shutdown()


@on_each_loop
async def test_unknown_kind_fails_the_activation_not_the_node() -> None:
    rt = runtime(Probe)
    rt.apply([start("x", "nope", 1)])
    status = rt.status()["x"]
    assert status.state is ActivationState.FAILED
    assert status.last_error == "no worker class for kind 'nope' on node n1"
    with pytest.raises(WorkerFailed, match="no worker class for kind 'nope'"):
        await rt.call("x", b"hi", 1.0)
    assert rt.running() == {}
    rt.apply([handoff("x", 1)])  # nothing runs: it can move at once
    await JOURNAL.until(lambda: JOURNAL.done)
    assert JOURNAL.done == [("x", 1, None)]
    assert "x" not in rt.status()
    rt.apply([start("x", "probe", 2)])
    assert await rt.call("x", b"hi", 1.0) == b"hi"
    await rt.shutdown()


# -- stopping and fencing --------------------------------------------------------------


@on_each_loop
async def test_stop_cancels_work_and_fails_pending_calls() -> None:
    rt = runtime(Probe)
    rt.apply([start("p", "probe", 1), start("u", "probe", 2)])
    in_flight = asyncio.create_task(rt.call("p", b"block", 2.0))
    await JOURNAL.until(lambda: JOURNAL.entries("busy", "p"))
    queued = asyncio.create_task(rt.call("p", b"x", 2.0))
    await asyncio.sleep(0)  # let it reach the mailbox
    began = asyncio.get_running_loop().time()
    rt.apply([stop("p", 1), stop("u", 2, StopReason.UNREGISTERED)])
    for task in (in_flight, queued):
        with pytest.raises(NotHere, match="quorum_lost"):
            await task
    await JOURNAL.until(lambda: len(JOURNAL.entries("stop", "p") + JOURNAL.entries("stop", "u")))
    await eventually(lambda: rt.running() == {})
    assert asyncio.get_running_loop().time() - began < GRACE
    assert JOURNAL.entries("stop", "p")[0][3] is StopCause.QUORUM_LOST
    assert JOURNAL.entries("stop", "u")[0][3] is StopCause.UNREGISTERED
    await asyncio.sleep(GRACE * 1.5)  # a fatal would have fired by now
    assert JOURNAL.fatals == []
    await rt.shutdown()


@on_each_loop
async def test_newer_start_supersedes_older_and_stale_ones_are_ignored() -> None:
    rt = runtime(Probe)
    rt.apply([start("p", "probe", 1)])
    await JOURNAL.until(lambda: JOURNAL.entries("start", "p"))
    rt.apply([start("p", "probe", 4), start("p", "probe", 2)])
    with pytest.raises(NotHere, match="stopping"):
        await rt.call("p", b"x", 1.0)  # the old one is stopping; the new one waits for it
    await JOURNAL.until(lambda: len(JOURNAL.entries("start", "p")) == 2)
    assert await rt.call("p", b"x", 1.0) == b"x"
    kinds = [(e[0], e[2]) for e in JOURNAL.log if e[0] in ("start", "stop")]
    assert kinds == [("start", 1), ("stop", 1), ("start", 4)]
    assert JOURNAL.entries("stop", "p")[0][3] is StopCause.SUPERSEDED
    assert rt.running() == {"p": 4}
    await rt.shutdown()


@on_each_loop
async def test_a_waiting_start_that_is_stopped_meanwhile_never_runs() -> None:
    rt = runtime(Probe)
    rt.apply([start("p", "probe", 1)])
    await JOURNAL.until(lambda: JOURNAL.entries("start", "p"))
    # 4 waits for 1 to stop; by then its Stop is queued too, and the task the Start
    # creates is cancelled before its first step, so on_start never runs.
    rt.apply([start("p", "probe", 4), stop("p", 4)])
    rt.apply([start("p", "probe", 5)])
    await JOURNAL.until(lambda: len(JOURNAL.entries("start", "p")) == 2)
    assert [e[2] for e in JOURNAL.entries("start", "p")] == [1, 5]
    assert rt.running() == {"p": 5}
    await rt.shutdown()


@on_each_loop
async def test_worker_that_will_not_stop_is_fatal_once() -> None:
    rt = runtime(Stubborn)
    rt.apply([start("a", "stubborn", 1), start("b", "stubborn", 2)])
    calls = [asyncio.create_task(rt.call(n, b"hold", 3.0)) for n in ("a", "b")]
    await JOURNAL.until(lambda: JOURNAL.entries("busy", "a") and JOURNAL.entries("busy", "b"))
    began = asyncio.get_running_loop().time()
    rt.apply([stop("a", 1), stop("b", 2)])
    try:
        await JOURNAL.until(lambda: JOURNAL.fatals)
        # Not before fence_grace, to the loop clock's resolution (uvloop counts whole ms).
        assert asyncio.get_running_loop().time() - began >= GRACE - CLOCK_RESOLUTION_S
        assert "did not stop within fence_grace" in JOURNAL.fatals[0]
        await rt.shutdown()  # still stuck: reported again only in the log
        assert len(JOURNAL.fatals) == 1
        assert set(rt.running()) == {"a", "b"}
    finally:
        GATE.set()  # let them go, or asyncio.run could never finish cancelling them
    await eventually(lambda: rt.running() == {})
    assert [e[3] for e in JOURNAL.log if e[0] == "stop"] == [StopCause.QUORUM_LOST] * 2
    for call in calls:
        with pytest.raises(NotHere):
            await call
    assert len(JOURNAL.fatals) == 1


@on_each_loop
async def test_shutdown_twice() -> None:
    rt = runtime(Probe, Counter)
    rt.apply([start("p", "probe", 1), start("c", "counter", 2)])
    await JOURNAL.until(lambda: JOURNAL.entries("start", "p"))
    await asyncio.gather(rt.shutdown(), rt.shutdown())
    await rt.shutdown()
    assert JOURNAL.entries("stop", "p")[0][3] is StopCause.SHUTDOWN
    assert len(JOURNAL.entries("stop", "p")) == 1
    assert rt.running() == {}
    with pytest.raises(NotHere, match="shutting down"):
        await rt.call("c", b"get", 1.0)
    rt.apply([start("q", "probe", 3)])  # ignored after shutdown
    assert rt.running() == {}
    assert JOURNAL.fatals == []


def test_configuration_is_validated() -> None:
    with pytest.raises(ConfigError, match="fence_grace"):
        runtime(Probe, fence_grace=0)
    with pytest.raises(ConfigError, match="restart_backoff"):
        runtime(Probe, restart_backoff=(1.0, 0.5))
    with pytest.raises(ConfigError, match="whose kind is 'probe'"):
        WorkerRuntime(node="n1", kinds={"other": Probe}, reports=Journal(), lease_holds=bool)


@on_each_loop
async def test_a_large_batch_of_effects_is_applied_in_turns_and_in_order() -> None:
    """100k names given to a node at once must not stall its event loop: the runtime
    applies a turn's worth now and the rest in later turns, in order (a Stop queued
    behind its Start still stops it)."""
    rt = runtime(Probe)
    count = 3 * EFFECTS_PER_TURN
    effects: list[Start | Stop] = [start(f"p{i}", "probe", i + 1) for i in range(count)]
    effects.append(stop("p0", 1, StopReason.UNREGISTERED))
    rt.apply(effects)
    assert len(rt.running()) <= EFFECTS_PER_TURN, "everything was applied in one turn"
    await eventually(lambda: len(rt.running()) == count - 1)
    assert "p0" not in rt.running()
    await JOURNAL.until(lambda: JOURNAL.entries("stop", "p0"))
    await rt.shutdown()


@on_each_loop
async def test_on_finished_and_live_tasks_follow_the_code_that_may_run() -> None:
    """What a worker host reports to its control process (which fences on it): an
    activation is live from its Start until its task has ended, and ``on_finished`` says
    so once, with the failure of one that could not start."""
    finished: list[tuple[str, int, str]] = []

    def on_finished(name: str, token: int, failure: str) -> None:
        finished.append((name, token, failure))
        JOURNAL.note("finished", name, token)

    rt = runtime(Probe, Stubborn, on_finished=on_finished)
    rt.apply([start("a", "probe", 1), start("b", "stubborn", 2), start("c", "nope", 3)])
    assert rt.live_tasks == 2
    await JOURNAL.until(lambda: finished)
    assert finished == [("c", 3, "no worker class for kind 'nope' on node n1")]
    reply = rt.submit_call("b", b"hold")
    await JOURNAL.until(lambda: JOURNAL.entries("busy", "b"))
    rt.apply([stop("a", 1), stop("b", 2)])
    await JOURNAL.until(lambda: len(finished) == 2)
    assert finished[1] == ("a", 1, "")
    assert rt.live_tasks == 1, "b swallows its cancel: its code may still run"
    GATE.set()
    await JOURNAL.until(lambda: len(finished) == 3)
    assert finished[2] == ("b", 2, "") and rt.live_tasks == 0
    assert reply.done()
