"""The nemesis: a seeded schedule of partitions, crashes, restarts and loss bursts.

Why a schedule and not a script: the interesting failures come from combinations nobody
writes by hand (a bridge while the leader restarts, a one-way cut during a snapshot
install). Every 0.5–3 s of true time the nemesis draws one fault from the table below.
It acts only on the world (network and process lifecycle), so it serves any simulated
application.

==============  ======  ==========================================================
fault           weight  effect
==============  ======  ==========================================================
heal            14      every link open again
split           12      random two-group symmetric partition
isolate         12      one node cut off in both directions
bridge           8      L and R joined only through one node (needs ≥ 3 nodes)
one_way          8      a single directed link blocked
crash           13      one node (usually) or several, up to all, stop
restart         13      crashed nodes come back from their disks
bounce           6      one node crashes and restarts 10–400 ms later (a supervisor)
pause            6      one node freezes for 0.1–2 s, memory intact (SIGSTOP, GC)
loss_burst       8      loss rises to 20 % for 1–2 s
nothing          6      —
==============  ======  ==========================================================

Half of the single-node faults (isolate, one-way, a lone crash, bounce, pause) aim at the
application's *focus* node when it names one — for Raft, the leader — because leader
churn is where the subtle bugs (Figure 8, lease overlap) live; random victims hit it too
rarely.

``calm()`` ends the chaos: heal, restart everything, restore normal loss.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from registry.sim.engine.world import World

FAULTS: tuple[tuple[str, int], ...] = (
    ("heal", 14),
    ("split", 12),
    ("isolate", 12),
    ("bridge", 8),
    ("one_way", 8),
    ("crash", 13),
    ("restart", 13),
    ("bounce", 6),
    ("pause", 6),
    ("loss_burst", 8),
    ("nothing", 6),
)

BURST_LOSS = 0.2


class Nemesis:
    def __init__(
        self,
        world: World[Any],
        rng: random.Random,
        focus: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._world = world
        self._rng = rng
        self._focus = focus
        self._until_us = 0
        self._burst = 0
        """Generation of the current loss burst; a newer burst or ``calm`` voids the
        scheduled end of an older one."""
        self.timeline: list[str] = []
        """Human-readable log of what was done and when (printed for failing seeds)."""
        self.counts: dict[str, int] = {name: 0 for name, _ in FAULTS}

    def start(self, until_us: int) -> None:
        """Draw faults from now until ``until_us`` of true time."""
        self._until_us = until_us
        self._schedule_next()

    def calm(self) -> None:
        world = self._world
        world.network.heal()
        world.network.loss = world.network.config.loss
        self._burst += 1
        for node in world.down_nodes():
            world.restart(node)
        self._log("calm: healed, loss normal, all nodes up")
        self._until_us = 0

    # -- internals ---------------------------------------------------------------------

    def _schedule_next(self) -> None:
        delay = self._rng.randint(500_000, 3_000_000)
        if self._world.now_us + delay < self._until_us:
            self._world.after(delay, self._act)

    def _act(self) -> None:
        if self._world.now_us >= self._until_us:
            return
        names = [name for name, _ in FAULTS]
        weights = [weight for _, weight in FAULTS]
        fault = self._rng.choices(names, weights)[0]
        self.counts[fault] += 1
        getattr(self, f"_do_{fault}")()
        self._schedule_next()

    def _log(self, text: str) -> None:
        self._world.record("nemesis", text)
        self.timeline.append(f"{self._world.now_us / 1e6:9.3f}s {text}")

    def _victim(self, candidates: list[str]) -> str:
        focus = self._focus()
        if focus in candidates and self._rng.random() < 0.5:
            return focus
        return self._rng.choice(candidates)

    def _do_heal(self) -> None:
        self._world.network.heal()
        self._log("heal")

    def _do_split(self) -> None:
        nodes = self._world.node_ids
        self._rng.shuffle(nodes)
        cut = self._rng.randint(1, len(nodes) - 1)
        left, right = sorted(nodes[:cut]), sorted(nodes[cut:])
        self._world.network.split([left, right])
        self._log(f"split {left} | {right}")

    def _do_isolate(self) -> None:
        nodes = self._world.node_ids
        lone = self._victim(nodes)
        self._world.network.split([[lone], [n for n in nodes if n != lone]])
        self._log(f"isolate {lone}")

    def _do_bridge(self) -> None:
        nodes = self._world.node_ids
        if len(nodes) < 3:
            self._do_split()
            return
        self._rng.shuffle(nodes)
        bridge, rest = nodes[0], nodes[1:]
        cut = self._rng.randint(1, len(rest) - 1)
        left, right = sorted(rest[:cut]), sorted(rest[cut:])
        self._world.network.bridge(left, bridge, right)
        self._log(f"bridge {left} <-> {bridge} <-> {right}")

    def _do_one_way(self) -> None:
        nodes = self._world.node_ids
        src = self._victim(nodes)
        dst = self._rng.choice([n for n in nodes if n != src])
        if self._rng.random() < 0.5:
            src, dst = dst, src
        self._world.network.one_way(src, dst)
        self._log(f"one-way cut {src} -> {dst}")

    def _do_crash(self) -> None:
        up = self._world.up_nodes()
        if not up:
            self._log("crash: nobody up")
            return
        total = len(self._world.node_ids)
        minority = max(1, (total - 1) // 2)
        if self._rng.random() < 0.8:
            count = self._rng.randint(1, minority)
        else:
            count = self._rng.randint(1, total)
        if count == 1:
            victims = [self._victim(up)]
        else:
            victims = sorted(self._rng.sample(up, min(count, len(up))))
        for node in victims:
            self._world.crash(node)
        self._log(f"crash {victims}")

    def _do_restart(self) -> None:
        down = self._world.down_nodes()
        if down and self._rng.random() < 0.3:
            down = [self._rng.choice(down)]
        for node in down:
            self._world.restart(node)
        self._log(f"restart {down}")

    def _do_bounce(self) -> None:
        up = self._world.up_nodes()
        if not up:
            self._log("bounce: nobody up")
            return
        victim = self._victim(up)
        delay = self._rng.randint(10_000, 400_000)
        self._world.crash(victim)
        self._world.after(delay, lambda: self._world.restart(victim))
        self._log(f"bounce {victim} (back in {delay / 1e3:.0f}ms)")

    def _do_pause(self) -> None:
        up = self._world.up_nodes()
        if not up:
            self._log("pause: nobody up")
            return
        victim = self._victim(up)
        length = self._rng.randint(100_000, 2_000_000)
        self._world.pause(victim, length)
        self._log(f"pause {victim} for {length / 1e6:.2f}s")

    def _do_loss_burst(self) -> None:
        network = self._world.network
        self._burst += 1
        burst = self._burst
        network.loss = BURST_LOSS
        length = self._rng.randint(1_000_000, 2_000_000)

        def end() -> None:
            if self._burst == burst:
                network.loss = network.config.loss
                self._log("loss burst over")

        self._world.after(length, end)
        self._log(f"loss burst {BURST_LOSS:.0%} for {length / 1e6:.2f}s")

    def _do_nothing(self) -> None:
        self._log("nothing")
