"""A tiny synchronous network of ``Replica``s for unit tests (the sibling of raftnet.py).

No real time: ``tick()`` ticks every live node once and then delivers messages (FIFO)
until the network is quiet; every clock advances in lockstep, so lease arithmetic is exact.
Readies are drained by the node's own Ready loop (``registry.node.ready_loop``), run to
completion on a virtual-time loop after each input: it persists to a ``SimDisk``, queues
the messages, runs the effects against a cluster-wide ledger and calls ``advance()``.

The ledger is the point: it records every Start/Stop/BeginHandoff and checks, at every
Start, that no other node is running that name (G1) and that its token is greater than
every earlier token of that name (G2). A violation is recorded (not raised, so a test can
assert on it precisely) in ``violations``.

Workers stop at once: after each ``advance()`` the harness reports every Stop of that
Ready as ``stopped``. With ``hold_stops`` they ignore stop instead: the ledger counts
them as running until the test calls ``confirm_stops`` (their hosts were killed).
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from registry.core.commands import Command
from registry.core.messages import Role
from registry.core.replica import (
    Applied,
    BeginHandoff,
    Effect,
    PeerMessage,
    Replica,
    ReplicaReady,
    Start,
    Stop,
)
from registry.core.timing import MembershipConfig, Timing
from registry.node.ready_loop import ReadyLoop
from registry.sim.shell.disk import SimDisk
from registry.sim.shell.vloop import VirtualLoop

Filter = Callable[[PeerMessage], bool]
"""Return False to drop a message."""


@dataclass(frozen=True, slots=True)
class Event:
    step: int
    """Harness step counter (ticks and deliveries), to order events across nodes."""
    node: str
    effect: Effect


class Cluster:
    def __init__(
        self,
        ids: Iterable[str] = ("n1", "n2", "n3"),
        *,
        seed: int = 7,
        timing: Timing | None = None,
        roles: dict[str, tuple[str, ...]] | None = None,
        kinds: dict[str, tuple[str, ...]] | None = None,
        membership: MembershipConfig | None = None,
    ) -> None:
        self.ids = list(ids)
        self.timing = (timing or Timing()).validate()
        self.membership = membership or self.timing.membership()
        self.rng = random.Random(seed)
        self.roles = roles or {}
        self.kinds = kinds or {}
        self.nodes: dict[str, Replica] = {}
        self.incarnations: dict[str, int] = {}
        """The persisted incarnation of each node."""
        self.queue: list[PeerMessage] = []
        self.cut: set[tuple[str, str]] = set()
        self.filters: list[Filter] = []
        self.rewrites: list[Callable[[PeerMessage], PeerMessage]] = []
        """Applied to each message that passed the filters, in order."""
        self.step_no = 0
        self.events: list[Event] = []
        self.applied: dict[str, list[Applied]] = {i: [] for i in self.ids}
        self.running: dict[str, dict[str, int]] = {i: {} for i in self.ids}
        """What the runtime of each node runs: name → token."""
        self.highest_token: dict[str, int] = {}
        self.handoffs: dict[str, dict[str, BeginHandoff]] = {i: {} for i in self.ids}
        """BeginHandoff requests each node's runtime has not answered yet."""
        self.violations: list[str] = []
        self.hold_stops = False
        self.held: dict[str, list[Stop]] = {i: [] for i in self.ids}
        """Stops whose workers ignore them (``hold_stops``), per node, not reported yet."""
        self.fences: list[tuple[int, str, int]] = []
        """(position in ``events``, node, new incarnation) for each incarnation persisted."""
        self.loop = VirtualLoop(executor_delay=lambda: 1e-6)  # time moves: no livelock
        weakref.finalize(self, self.loop.close)
        self.disks: dict[str, SimDisk] = {}
        self.ready_loops: dict[str, ReadyLoop[None]] = {}
        voters = frozenset(self.ids)
        for node in self.ids:
            raft_cfg = self.timing.raft(node, voters=voters)
            self.incarnations[node] = 1
            self.nodes[node] = Replica(
                raft_cfg,
                self.membership,
                random.Random(self.rng.random()),
                incarnation=1,
                address=f"{node}:7000",
                roles=self.roles.get(node, ()),
                kinds=self.kinds.get(node, ()),
            )
            self.disks[node] = SimDisk()
            self.ready_loops[node] = self._ready_loop(node)
            self._drain(node)

    def _ready_loop(self, node: str) -> ReadyLoop[None]:
        stops: list[Stop] = []

        def apply(rd: ReplicaReady) -> None:
            if rd.incarnation is not None:
                assert rd.incarnation > self.incarnations[node], "incarnations only grow"
                self.incarnations[node] = rd.incarnation
                self.fences.append((len(self.events), node, rd.incarnation))
            self.applied[node].extend(rd.applied)
            for effect in rd.effects:
                self._run(node, effect)
            stops[:] = [e for e in rd.effects if isinstance(e, Stop)]

        def advanced() -> None:
            if self.hold_stops:
                self.held[node].extend(stops)
            else:
                for stop in stops:
                    self.nodes[node].stopped(stop.name, stop.token)

        return ReadyLoop(
            self.nodes[node],
            self.disks[node],
            tick=self.timing.tick,
            clock=self.loop.time,
            send=lambda msgs: self.queue.extend(msgs),
            apply=apply,
            advanced=advanced,
            feed=lambda item: None,
            on_turn=lambda: None,
        )

    # -- network -----------------------------------------------------------------------

    def isolate(self, node: str) -> None:
        for other in self.ids:
            if other != node:
                self.cut |= {(node, other), (other, node)}

    def heal(self) -> None:
        self.cut.clear()

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            for node in self.ids:
                self.step_no += 1
                self.nodes[node].tick()
                self._drain(node)
            self.pump()

    def tick_until(self, done: Callable[[], bool], limit: int = 400) -> int:
        """Tick until ``done()``; return how many ticks it took."""
        for n in range(limit):
            if done():
                return n
            self.tick()
        raise AssertionError(f"condition not reached after {limit} ticks")

    def pump(self, limit: int = 100_000) -> None:
        for node in self.ids:
            self._drain(node)
        for _ in range(limit):
            if not self.queue:
                return
            msg = self.queue.pop(0)
            if (msg.src, msg.dst) in self.cut or msg.dst not in self.nodes:
                continue
            if not all(f(msg) for f in self.filters):
                continue
            for rewrite in self.rewrites:
                msg = rewrite(msg)
            self.step_no += 1
            self.nodes[msg.dst].step(msg)
            self._drain(msg.dst)
        raise AssertionError("network did not go quiet")

    # -- driving a node ----------------------------------------------------------------

    def propose(self, command: Command) -> int:
        index = self.leader().propose(command)
        self.pump()
        return index

    def handoff_done(self, node: str, name: str, state: bytes | None) -> None:
        """The runtime of ``node`` finished ``begin_handoff`` for ``name``."""
        request = self.handoffs[node].pop(name)
        self.running[node].pop(name, None)
        self.nodes[node].handoff_done(name, request.token, state)
        self._drain(node)
        self.pump()

    def all_handoffs_done(self, state: Callable[[str], bytes | None]) -> None:
        """Every runtime finishes every pending ``begin_handoff`` in one turn of its loop,
        before its next Ready (``state(name)`` is what each worker hands over)."""
        for node, requests in self.handoffs.items():
            for name, request in list(requests.items()):
                del requests[name]
                self.running[node].pop(name, None)
                self.nodes[node].handoff_done(name, request.token, state(name))
            self._drain(node)
        self.pump()

    def confirm_stops(self, node: str) -> None:
        """The held stops of ``node`` end now (their hosts were killed and reaped)."""
        held, self.held[node] = self.held[node], []
        for stop in held:
            if self.running[node].get(stop.name) == stop.token:
                del self.running[node][stop.name]
            self.nodes[node].stopped(stop.name, stop.token)
        self._drain(node)
        self.pump()

    def _drain(self, node: str) -> None:
        self.loop.run_until_complete(self.ready_loops[node].drain())

    def tee_readies(self, node: str, each: Callable[[ReplicaReady], object]) -> None:
        """Show ``each`` every Ready ``node`` hands out from now on."""
        replica = self.nodes[node]
        take = replica.ready

        def tee() -> ReplicaReady:
            rd = take()
            each(rd)
            return rd

        replica.ready = tee  # type: ignore[method-assign]

    def _run(self, node: str, effect: Effect) -> None:
        self.events.append(Event(self.step_no, node, effect))
        if isinstance(effect, Start):
            act = effect.activation
            for other, names in self.running.items():
                if other != node and act.name in names:
                    self.violations.append(
                        f"step {self.step_no}: {node} starts {act.name}@{act.token} "
                        f"while {other} runs it @{names[act.name]}"
                    )
            if act.token <= self.highest_token.get(act.name, 0):
                self.violations.append(
                    f"step {self.step_no}: {node} starts {act.name} with token {act.token}, "
                    f"not above {self.highest_token[act.name]}"
                )
            self.highest_token[act.name] = max(act.token, self.highest_token.get(act.name, 0))
            self.running[node][act.name] = act.token
        elif isinstance(effect, Stop):
            if not self.hold_stops and self.running[node].get(effect.name) == effect.token:
                del self.running[node][effect.name]
            self.handoffs[node].pop(effect.name, None)
        else:
            self.handoffs[node][effect.name] = effect

    # -- queries -----------------------------------------------------------------------

    def leaders(self) -> list[str]:
        return [n for n, r in self.nodes.items() if r.raft.role is Role.LEADER]

    def leader(self) -> Replica:
        found = self.leaders()
        assert len(found) == 1, f"expected one leader, found {found}"
        return self.nodes[found[0]]

    def starts(self, node: str | None = None, since: int = 0) -> list[Start]:
        return [
            e.effect
            for e in self.events[since:]
            if isinstance(e.effect, Start) and (node is None or e.node == node)
        ]

    def stops(self, node: str | None = None, since: int = 0) -> list[Stop]:
        return [
            e.effect
            for e in self.events[since:]
            if isinstance(e.effect, Stop) and (node is None or e.node == node)
        ]

    def where(self, name: str) -> list[str]:
        """The nodes whose runtime runs ``name`` now."""
        return [n for n, names in self.running.items() if name in names]
