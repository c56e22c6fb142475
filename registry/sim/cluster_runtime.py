"""The model worker runtime of one simulated node, and the ledger of live intervals.

What the runtime does with the replica's effects (the real one is ``registry.worker``):

- ``Start``: an activation begins now (true time). Every worker is a *counter*: it
  starts from the count in its handed-over state (a HANDOFF start) or from zero.
- ``Stop``: it ends now.
- ``BeginHandoff``: after a small random delay the worker answers ``Resume(count)`` —
  or ``Restart()`` in some seeds — and the runtime stops it and reports
  ``handoff_done``. In some seeds the answer comes only after the deadline; then the
  runtime stops it at ``deadline_tick`` (this node's ticks) and reports it without state,
  and the late answer is ignored.
- A crash ends every activation at the crash instant.

Live intervals (what G1 compares) follow what the real runtime promises: it dispatches to
an activation only while the node is up, not paused, and holds its lease. The runtime
records the true-time stretches during which the lease was held — a lease held until
tick *k* of this node ends at the true instant that tick fires — and the ledger removes
paused stretches. The live segments of an activation are its ``[start, end)`` cut down
to those. The check therefore does not trust the core to stop workers on time.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from registry.core.replica import BeginHandoff, Effect, Start, Stop
from registry.core.state import StartReason
from registry.sim.cluster_observations import (
    ActivationEnded,
    ActivationStarted,
    ClusterObservation,
    Segment,
)

if TYPE_CHECKING:
    from registry.sim.cluster_harness import ClusterHost

PAUSED_RETRY_US = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class HandoffBehaviour:
    """How workers answer ``begin_handoff`` (drawn per seed)."""

    delay_us: tuple[int, int] = (1_000, 300_000)
    """Uniform answer delay, true microseconds. Default 1–300 ms."""
    late: float = 0.0
    """Probability that an answer comes only after the deadline. Default 0."""
    restart: float = 0.0
    """Probability that a worker answers ``Restart()`` (no state). Default 0."""


class Ledger:
    """Cluster-wide: pauses per node, and the observations of activations."""

    def __init__(self, now: Callable[[], int], observe: Callable[[ClusterObservation], None]):
        self._now = now
        self._observe = observe
        self.pauses: dict[str, list[Segment]] = {}
        self._paused_since: dict[str, int] = {}
        self.starts: dict[str, int] = {reason.value: 0 for reason in StartReason}
        self.late_answers = 0
        """``begin_handoff`` answers drawn to come after the deadline."""

    def on_lifecycle(self, event: str, node: str) -> None:
        now = self._now()
        if event == "pause":
            self._paused_since[node] = now
        elif event in ("resume", "crash") and node in self._paused_since:
            since = self._paused_since.pop(node)
            self.pauses.setdefault(node, []).append((since, now))

    def started(self, obs: ActivationStarted) -> None:
        self.starts[obs.reason] += 1
        self._observe(obs)

    def ended(
        self, node: str, act: _Activation, why: str, leases: list[list[int]], end_us: int
    ) -> None:
        live = self._live(node, act.start_us, end_us, leases)
        self._observe(
            ActivationEnded(
                at_us=end_us,
                node=node,
                name=act.name,
                token=act.token,
                reason=act.reason,
                why=why,
                start_us=act.start_us,
                final=act.count,
                live=live,
            )
        )

    def _live(
        self, node: str, start: int, end: int, leases: list[list[int]]
    ) -> tuple[Segment, ...]:
        held = [(max(a, start), min(b, end)) for a, b in leases if max(a, start) < min(b, end)]
        pauses = list(self.pauses.get(node, ()))
        if node in self._paused_since:
            pauses.append((self._paused_since[node], end))
        for p_start, p_end in pauses:
            if p_end <= start or p_start >= end:
                continue
            cut: list[Segment] = []
            for a, b in held:
                if p_end <= a or p_start >= b:
                    cut.append((a, b))
                    continue
                if a < p_start:
                    cut.append((a, p_start))
                if p_end < b:
                    cut.append((p_end, b))
            held = cut
        return tuple(held)


@dataclass(slots=True)
class _Activation:
    name: str
    token: int
    reason: str
    start_us: int
    count: int
    handoff: BeginHandoff | None = None


def encode_count(count: int) -> bytes:
    return str(count).encode()


def decode_count(state: bytes | None) -> int:
    return int(state.decode()) if state else 0


class NodeRuntime:
    """One boot of one node's worker runtime (a crash ends it; a restart makes another)."""

    def __init__(
        self, host: ClusterHost, ledger: Ledger, behaviour: HandoffBehaviour, rng: random.Random
    ) -> None:
        self._host = host
        self._ledger = ledger
        self._behaviour = behaviour
        self._rng = rng
        self.active: dict[str, _Activation] = {}
        self.leases: list[list[int]] = []
        """True-time stretches ``[start, end]`` during which this boot held its lease."""
        self.alive = True

    @property
    def node(self) -> str:
        return self._host.id

    def _now(self) -> int:
        return self._host.sim.world.now_us

    # -- effects -----------------------------------------------------------------------

    def run(self, effect: Effect) -> None:
        now = self._now()
        if isinstance(effect, Start):
            act = effect.activation
            if act.name in self.active:
                raise AssertionError(
                    f"{self.node}: Start of {act.name!r}@{act.token} while it runs "
                    f"@{self.active[act.name].token}"
                )
            initial = decode_count(act.state)
            self.active[act.name] = _Activation(
                name=act.name,
                token=act.token,
                reason=act.reason.value,
                start_us=now,
                count=initial,
            )
            self._host.sim.world.record("start", self.node, act.name, act.token)
            self._ledger.started(
                ActivationStarted(
                    at_us=now,
                    node=self.node,
                    name=act.name,
                    token=act.token,
                    reason=act.reason.value,
                    initial=initial,
                )
            )
        elif isinstance(effect, Stop):
            running = self.active.get(effect.name)
            if running is not None and running.token == effect.token:
                self.end(effect.name, effect.reason.value)
        else:
            self._begin_handoff(effect)

    def _begin_handoff(self, request: BeginHandoff) -> None:
        act = self.active.get(request.name)
        if act is None or act.token != request.token:
            return
        act.handoff = request
        behaviour, rng = self._behaviour, self._rng
        if behaviour.late and rng.random() < behaviour.late:
            self._ledger.late_answers += 1
            period = self._host.sim.world.clock(self.node).period_us
            ticks = request.deadline_tick - self._host.ticks() + 5
            delay = max(1, ticks) * period
        else:
            delay = rng.randint(*behaviour.delay_us)
        restart = bool(behaviour.restart) and rng.random() < behaviour.restart
        self._host.sim.world.after(delay, lambda: self._answer(request, restart))

    def _answer(self, request: BeginHandoff, restart: bool) -> None:
        """The worker's ``begin_handoff`` returned ``Resume(count)`` or ``Restart()``."""
        if not self.alive:
            return
        world = self._host.sim.world
        if world.is_paused(self.node):
            world.after(PAUSED_RETRY_US, lambda: self._answer(request, restart))
            return
        act = self.active.get(request.name)
        if act is None or act.handoff is not request:
            return  # stopped meanwhile (fenced, unregistered, or past the deadline)
        state = None if restart else encode_count(act.count)
        self.end(request.name, "handoff")
        self._host.handoff_done(request.name, request.token, state)

    def check_deadlines(self, ticks: int) -> None:
        """Stop activations whose ``begin_handoff`` is past its deadline; release them
        without state."""
        for name, act in sorted(self.active.items()):
            request = act.handoff
            if self.active.get(name) is not act or request is None:
                continue  # stopped by an earlier iteration's effects, or no handoff
            if ticks >= request.deadline_tick:
                self.end(name, "handoff-deadline")
                self._host.handoff_done(name, request.token, None)

    def end(self, name: str, why: str, at_us: int | None = None) -> None:
        act = self.active.pop(name)
        end = self._now() if at_us is None else at_us
        self._host.sim.world.record("end", self.node, name, act.token, why)
        self._ledger.ended(self.node, act, why, self.leases, end)

    def crash(self) -> None:
        for name in sorted(self.active):
            self.end(name, "crash")
        self.alive = False

    # -- leases and calls --------------------------------------------------------------

    def note_lease(self, has_lease: bool, until_us: int) -> None:
        """After each event: the lease is held until ``until_us`` (true time)."""
        if not has_lease:
            return
        now = self._now()
        leases = self.leases
        if leases and leases[-1][1] > now:
            leases[-1][1] = max(leases[-1][1], until_us)
        else:
            leases.append([now, until_us])

    def call(self, name: str) -> int | None:
        """A client's ``incr`` reaches this node: the new count, or ``None`` when the
        runtime would refuse (not running here, paused, or no lease)."""
        act = self.active.get(name)
        if act is None or not self.alive or self._host.sim.world.is_paused(self.node):
            return None
        if not self._host.has_lease():
            return None
        act.count += 1
        return act.count
