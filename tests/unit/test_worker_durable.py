"""The worker runtime's durable parts on a real asyncio loop: a crashed instance restarts
from its last committed checkpoint, oversized checkpoints never leave the runtime, and
timers fire per period and end with the instance."""

from __future__ import annotations

import asyncio
import time
from typing import ClassVar

import pytest

from registry.core.durable import MAX_CATCH_UP, StoredReminder
from registry.core.errors import LimitExceeded
from registry.core.replica import Start
from registry.core.state import Activation
from registry.testing.worker_harness import WorkerHarness
from registry.worker import Context, StartReason, Worker, WorkerFailed, WorkerRuntime
from registry.worker.timers import Schedule, Tick
from tests.unit.async_support import async_test
from tests.unit.test_worker_runtime import Journal, eventually


class Store:
    """The node's side of ``checkpoint``: commits at consecutive log indexes."""

    def __init__(self) -> None:
        self.committed: list[tuple[str, int, bytes]] = []

    async def checkpoint(self, name: str, token: int, state: bytes) -> int:
        self.committed.append((name, token, state))
        return 100 + len(self.committed)


class Durable(Worker):
    kind: ClassVar[str] = "durable"
    seen: ClassVar[list[tuple[str, bytes | None, int]]] = []
    ticks: ClassVar[list[str]] = []

    def __init__(self) -> None:
        self.ctx: Context | None = None

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        self.ctx = ctx
        Durable.seen.append((ctx.reason.value, state, ctx.restored_from))

    async def handle_call(self, payload: bytes) -> bytes:
        assert self.ctx is not None
        command, _, arg = payload.partition(b" ")
        if command == b"save":
            return str(await self.ctx.checkpoint(arg)).encode()
        if command == b"big":
            try:
                await self.ctx.checkpoint(b"x" * 2048)
            except LimitExceeded as exc:
                return exc.reason.encode()
        if command == b"timer":
            self.ctx.set_timer("t", 0.01, every=0.01)
        if command == b"crash":
            raise RuntimeError("crash")
        return b""

    async def handle_timer(self, name: str) -> None:
        Durable.ticks.append(name)


def _runtime(store: Store) -> WorkerRuntime:
    Durable.seen, Durable.ticks = [], []
    return WorkerRuntime(
        node="n1",
        kinds={"durable": Durable},
        reports=Journal(),
        lease_holds=lambda: True,
        max_state_bytes=1024,
        restart_backoff=(0.001, 0.001),
        checkpoint=store.checkpoint,
    )


def _start(runtime: WorkerRuntime) -> None:
    spec = Activation(
        name="w", kind="durable", args=b"", token=7, reason=StartReason.NEW, state=None
    )
    runtime.apply([Start(activation=spec)])


@async_test
async def test_a_crashed_instance_restarts_from_the_last_committed_checkpoint() -> None:
    store = Store()
    runtime = _runtime(store)
    _start(runtime)
    await eventually(lambda: Durable.seen)
    assert await runtime.call("w", b"save one", 1) == b"101"
    assert await runtime.call("w", b"save two", 1) == b"102"
    assert store.committed == [("w", 7, b"one"), ("w", 7, b"two")]
    with pytest.raises(WorkerFailed):
        await runtime.call("w", b"crash", 1)
    await eventually(lambda: len(Durable.seen) == 2)
    assert Durable.seen == [("new", None, 0), ("restart", b"two", 102)]
    await runtime.shutdown()


@async_test
async def test_a_checkpoint_over_max_state_bytes_is_refused_before_the_store() -> None:
    store = Store()
    runtime = _runtime(store)
    _start(runtime)
    assert await runtime.call("w", b"big", 1) == b"STATE_TOO_LARGE"
    assert store.committed == []
    await runtime.shutdown()


@async_test
async def test_timers_fire_per_period_and_end_with_the_instance() -> None:
    runtime = _runtime(Store())
    _start(runtime)
    await runtime.call("w", b"timer", 1)
    await eventually(lambda: len(Durable.ticks) >= 3)
    with pytest.raises(WorkerFailed):
        await runtime.call("w", b"crash", 1)
    await eventually(lambda: len(Durable.seen) == 2)
    fired = len(Durable.ticks)
    await asyncio.sleep(0.1)  # ten periods: a timer that survived the crash would fire
    assert len(Durable.ticks) == fired, "the crashed instance's timer kept firing"
    await runtime.shutdown()


def test_the_harness_fails_over_from_the_last_checkpoint() -> None:
    async def scenario() -> None:
        async with WorkerHarness(Durable, max_state_bytes=1024) as h:
            await h.call(b"save 7")
            await h.failover()
            assert (h.ctx.reason, h.ctx.restored_from) == (StartReason.FAILOVER, 1001)
            assert Durable.seen[-1] == ("failover", b"7", 1001)
            assert await h.call(b"big") == b"STATE_TOO_LARGE"

    Durable.seen = []
    asyncio.run(scenario())


def test_a_reminder_fires_its_missed_periods_oldest_first_at_most_max_catch_up() -> None:
    async def scenario() -> tuple[list[int], list[int]]:
        ticks: list[Tick] = []
        schedule = Schedule(ticks.append)
        now = time.time()
        schedule.start_reminder(StoredReminder(reminder="r", due=now - 1.25, every=0.5))
        far = StoredReminder(reminder="far", due=now - 1000 * 0.5 - 0.1, every=0.5, fired=3)
        schedule.start_reminder(far)
        await eventually(lambda: sum(t.name == "far" for t in ticks) >= MAX_CATCH_UP)
        schedule.close()
        near = [t.period for t in ticks if t.name == "r"][:3]
        return near, [t.period for t in ticks if t.name == "far"][:2]

    near, far = asyncio.run(scenario())
    assert near == [0, 1, 2], "periods 0..2 were due: each fires, oldest first"
    assert far == [1000 - MAX_CATCH_UP + 1, 1000 - MAX_CATCH_UP + 2]


def test_set_and_cancel_reminder_commit_first_and_a_cancelled_one_never_fires() -> None:
    async def scenario() -> tuple[list[tuple[str, str]], list[Tick], list[str]]:
        committed: list[tuple[str, str]] = []

        async def remind(name: str, op: str, due: float, every: float, period: int) -> int:
            committed.append((name, op))
            return len(committed)

        ticks: list[Tick] = []
        schedule = Schedule(ticks.append, remind)
        with pytest.raises(ValueError, match="period"):
            await schedule.set_reminder("fast", time.time() + 1, 0.1)
        await schedule.set_reminder("r", time.time() + 0.05, 0.5)
        listed = list(schedule.reminders())
        await schedule.cancel_reminder("r")
        await asyncio.sleep(0.15)  # three times its due delay: a live reminder would fire
        schedule.close()
        return committed, ticks, listed

    committed, ticks, listed = asyncio.run(scenario())
    assert committed == [("r", "set"), ("r", "cancel")], "a refused period commits nothing"
    assert listed == ["r"] and ticks == []


class Reminded(Worker):
    kind: ClassVar[str] = "reminded"
    fired: ClassVar[list[tuple[str, float]]] = []

    async def on_start(self, ctx: Context, state: bytes | None) -> None:
        pass

    async def handle_reminder(self, name: str, fired_at: float) -> None:
        Reminded.fired.append((name, fired_at))


@async_test
async def test_a_reminder_period_without_a_sub_lease_fires_once_the_lease_is_back() -> None:
    """A restarted host starts its activations (and their missed periods) before its
    first sub-lease: the period must not run without the lease, and must not be lost
    either — the holder is the same, so nobody else will fire it (it was, in CI)."""
    Reminded.fired = []
    lease = [False]
    acked: list[tuple[str, str, int]] = []

    async def remind(
        name: str, token: int, reminder: str, op: str, due: float, every: float, period: int
    ) -> int:
        acked.append((reminder, op, period))
        return len(acked)

    runtime = WorkerRuntime(
        node="n1",
        kinds={"reminded": Reminded},
        reports=Journal(),
        lease_holds=lambda: lease[0],
        remind=remind,
    )
    due = time.time() - 0.2  # period 0 is already due when the instance starts
    spec = Activation(
        name="w",
        kind="reminded",
        args=b"",
        token=7,
        reason=StartReason.RESTART,
        state=None,
        reminders=(StoredReminder(reminder="r", due=due, every=60.0),),
    )
    runtime.apply([Start(activation=spec)])
    await asyncio.sleep(0.3)  # six retries without a lease: none may run the hook
    assert Reminded.fired == [] and acked == []
    lease[0] = True
    await eventually(lambda: acked)
    assert Reminded.fired == [("r", due)]
    assert acked == [("r", "fired", 0)]
    await runtime.shutdown()
