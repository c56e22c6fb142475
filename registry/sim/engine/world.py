"""The discrete-event world: true time, node clocks, the network, crashes and restarts.

Theory of operation
-------------------
Everything that happens is an *action* on one heap keyed by ``(true_time_us, seq)``:
integer microseconds (never floats, so ordering is exact) and a sequence number that
breaks ties in scheduling order. ``run_until`` pops actions in order; one action is
atomic (a crash can fall between two actions, never inside one).

The world knows nothing about Raft. An application plugs in as ``Process`` objects (one
per node): the world boots them, ticks them on their own drifting clocks, delivers the
messages they ``send``, and crashes/restarts them. The Raft harness is one such
application; a registry-with-workers model can be another on the same world.

Crash semantics: the process loses its memory (``on_crash``), its pending ticks are
cancelled and messages in flight *to* it are dropped (they were addressed to an
incarnation that no longer exists). What it keeps on its simulated disk is the
application's business. A restart boots a new incarnation with a fresh seeded RNG.

Pause semantics (SIGSTOP/SIGCONT, a long GC): the process keeps its memory but does
nothing; its clock keeps running. Messages that arrive meanwhile wait in its socket
buffer. On resume it first learns how many ticks it missed (``on_resume``) — a correct
shell accounts for elapsed monotonic time before handling any input — then gets the
buffered messages in arrival order.

Determinism: one ``random.Random`` feeds the world; node ids are iterated sorted; the
trace digest (``record``) lets tests prove that a seed replays exactly.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from registry.sim.engine.clock import ClockConfig, NodeClock
from registry.sim.engine.network import Network, NetworkConfig

M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)

Action = Callable[[], None]


class Process(Protocol[M_contra]):
    """One node of a simulated application, as the world drives it."""

    def on_start(self, rng: random.Random) -> None:
        """Boot (or reboot) from whatever the node kept on durable storage."""

    def on_tick(self) -> None:
        """One tick of this node's own clock has passed."""

    def on_message(self, src: str, msg: M_contra) -> None:
        """A message sent by ``src`` arrived."""

    def on_crash(self) -> None:
        """The process died: drop every in-memory state; keep only the simulated disk."""

    def on_resume(self, missed_ticks: int) -> None:
        """The process was paused and missed ``missed_ticks`` ticks of its clock."""


class _Slot(Generic[M]):
    __slots__ = ("clock", "incarnation", "missed_ticks", "paused", "paused_until", "process", "up")

    def __init__(self, process: Process[M], clock: NodeClock) -> None:
        self.process = process
        self.clock = clock
        self.incarnation = 0
        self.up = False
        self.paused = False
        self.paused_until = 0
        self.missed_ticks = 0


class World(Generic[M]):
    def __init__(
        self,
        *,
        rng: random.Random,
        clock: ClockConfig | None = None,
        network: NetworkConfig | None = None,
        trace_key: Callable[[M], object] = lambda m: None,
    ) -> None:
        self.now_us = 0
        self.events = 0
        self.clock_config = clock or ClockConfig()
        self._rng = random.Random(rng.getrandbits(64))
        self._boot_rng = random.Random(rng.getrandbits(64))
        self.network = Network(network or NetworkConfig(), random.Random(rng.getrandbits(64)))
        self._heap: list[tuple[int, int, Action]] = []
        self._seq = 0
        self._slots: dict[str, _Slot[M]] = {}
        self._stopped = False
        self._trace = hashlib.blake2b(digest_size=16)
        self._trace_key = trace_key
        self.tracing = True
        """Feed the trace digest. On by default; the cost is a few percent."""
        self.listeners: list[Callable[[str, str], None]] = []
        """Called with ``(event, node)`` after a ``crash``, ``restart``, ``pause`` or
        ``resume`` took effect, for applications that must know when (a checker of live
        intervals, say). The Raft harness needs none."""

    # -- scheduling --------------------------------------------------------------------

    def at(self, time_us: int, action: Action) -> None:
        if time_us < self.now_us:
            raise ValueError(f"cannot schedule in the past ({time_us} < {self.now_us})")
        self._seq += 1
        heapq.heappush(self._heap, (time_us, self._seq, action))

    def after(self, delay_us: int, action: Action) -> None:
        self.at(self.now_us + delay_us, action)

    def every(self, period_us: int, action: Action) -> None:
        """Run ``action`` every ``period_us`` of true time, forever (first after one period)."""

        def again() -> None:
            action()
            self.after(period_us, again)

        self.after(period_us, again)

    def stop(self) -> None:
        """End the current ``run_until`` after the action that is running."""
        self._stopped = True

    def run_until(self, end_us: int) -> None:
        """Process every action due at or before ``end_us`` (or until ``stop``)."""
        self._stopped = False
        heap = self._heap
        pop = heapq.heappop
        while heap and not self._stopped:
            if heap[0][0] > end_us:
                break
            time_us, _, action = pop(heap)
            self.now_us = time_us
            self.events += 1
            action()
        if not self._stopped:
            self.now_us = max(self.now_us, end_us)

    # -- nodes -------------------------------------------------------------------------

    def add(self, node_id: str, process: Process[M]) -> None:
        """Register a node and boot it now."""
        if node_id in self._slots:
            raise ValueError(f"duplicate node id {node_id!r}")
        self._slots[node_id] = _Slot(process, NodeClock.draw(self._rng, self.clock_config, 0))
        self._boot(node_id)

    @property
    def node_ids(self) -> list[str]:
        return sorted(self._slots)

    def up_nodes(self) -> list[str]:
        return [n for n in sorted(self._slots) if self._slots[n].up]

    def down_nodes(self) -> list[str]:
        return [n for n in sorted(self._slots) if not self._slots[n].up]

    def is_up(self, node_id: str) -> bool:
        return self._slots[node_id].up

    def is_paused(self, node_id: str) -> bool:
        return self._slots[node_id].paused

    def clock(self, node_id: str) -> NodeClock:
        return self._slots[node_id].clock

    def crash(self, node_id: str) -> None:
        slot = self._slots[node_id]
        if not slot.up:
            return
        slot.up = False
        slot.incarnation += 1
        slot.paused = False
        slot.missed_ticks = 0
        self.record("crash", node_id)
        slot.process.on_crash()
        self._notify("crash", node_id)

    def pause(self, node_id: str, duration_us: int) -> None:
        slot = self._slots[node_id]
        if not slot.up or slot.paused:
            return
        slot.paused = True
        slot.paused_until = until = self.now_us + duration_us
        incarnation = slot.incarnation
        self.record("pause", node_id, duration_us)
        self._notify("pause", node_id)

        def resume() -> None:
            if slot.incarnation != incarnation:
                return
            missed, slot.missed_ticks = slot.missed_ticks, 0
            slot.paused = False
            self.record("resume", node_id, missed)
            self._notify("resume", node_id)
            slot.process.on_resume(missed)

        # Scheduled now, so its sequence number precedes every message deferred to
        # ``until``: missed ticks are accounted for before buffered input.
        self.at(until, resume)

    def restart(self, node_id: str) -> None:
        slot = self._slots[node_id]
        if slot.up:
            return
        slot.clock = NodeClock.draw(self._rng, self.clock_config, self.now_us)
        self.record("restart", node_id)
        self._boot(node_id)
        self._notify("restart", node_id)

    def _boot(self, node_id: str) -> None:
        slot = self._slots[node_id]
        slot.up = True
        slot.incarnation += 1
        incarnation = slot.incarnation
        period = slot.clock.period_us

        def tick() -> None:
            if slot.incarnation != incarnation:
                return  # that incarnation died; its timer died with it
            self.at(self.now_us + period, tick)
            if slot.paused:
                slot.missed_ticks += 1
                return
            slot.process.on_tick()

        self.at(self.now_us + slot.clock.phase_us, tick)
        slot.process.on_start(random.Random(self._boot_rng.getrandbits(64)))

    def _notify(self, event: str, node_id: str) -> None:
        for listener in self.listeners:
            listener(event, node_id)

    # -- messages ----------------------------------------------------------------------

    def send(self, src: str, dst: str, msg: M) -> None:
        target = self._slots.get(dst)
        if target is None:
            return
        incarnation = target.incarnation
        network = self.network

        def deliver() -> None:
            if not target.up or target.incarnation != incarnation:
                return  # addressed to an incarnation that has since died
            if target.paused:
                self.at(target.paused_until, deliver)  # waits in the socket buffer
                return
            if network.is_blocked(src, dst):
                network.stats.blocked += 1
                return  # the link was cut while the message was in flight
            network.stats.delivered += 1
            if self.tracing:
                self.record("msg", src, dst, self._trace_key(msg))
            target.process.on_message(src, msg)

        for delay in network.plan(src, dst):
            self.at(self.now_us + delay, deliver)

    # -- trace -------------------------------------------------------------------------

    def record(self, *parts: object) -> None:
        """Fold one observable event into the trace digest. ``parts`` must have a
        hash-seed-independent ``repr`` (ints, strs, bytes, tuples of them — no sets)."""
        if self.tracing:
            self._trace.update(repr((self.now_us, parts)).encode())

    def trace_digest(self) -> str:
        return self._trace.hexdigest()
