"""Clients of the cluster harness: registrations, unregistrations, groups, counter calls.

How a client behaves:

- Every 40–120 ms of true time (while ``writing``) it starts one registry op on names it
  is not already working on: mostly ``register-many`` batches (5–40 names; 1 in 5 is a
  single ``Register``), some unregisters (later re-registered), group joins and leaves.
  One op per name at a time: that is what lets the registrations checker reason about
  ops of unknown outcome (see ``registry.sim.cluster.checkers``).
- An op goes to the node it believes leads (a random reachable node when it has no
  idea). ``NotLeader`` is followed to its hint, other refusals retried shortly, up to
  ``MAX_ATTEMPTS`` tries.
- An accepted op is *acknowledged* when the node that accepted it applies that index with
  that command and result OK. If that node crashes, a snapshot skips the index, or
  ``OP_TIMEOUT_US`` passes, the outcome is unknown (``OpUncertain``). If the index holds
  another command, the op is known not to have happened.
- Every 5–15 ms (calm phase included) it sends ``incr`` to a name it believes is
  registered, at the holder named by a random reachable replica's state; the holder's
  runtime counts it if it runs the name and holds its lease.
- Every 20–60 ms (not in the calm phase: it is a write) the worker of a name it believes
  is registered,
  where one runs, takes a checkpoint of its count (its own random stream).
- A share ``REMINDER_SHARE`` (15 %) of the names have workers that keep a durable reminder
  (``registry.sim.cluster.reminders``: it sets it when it starts without it), with a
  period of 1–3 s (its own random stream).

Each name's spec is drawn once per seed: most are plain counters, some need a role
(``web``/``batch``), some are of kind ``session`` (hosted only by nodes that run any
kind), and some carry a priority list such as ``(("n1",), ("n2", "n3"))``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from registry.core.commands import Command, Join, Leave, NameSpec, Register, Unregister
from registry.core.errors import NotLeader, ProposalRejected
from registry.core.replica import Applied
from registry.core.state import Code
from registry.sim.cluster.harness import ClientHooks, ClusterHost, ClusterSim
from registry.sim.cluster.observations import NameSpecified, OpAccepted, OpAcked, OpUncertain
from registry.sim.cluster.reminders import ReminderPlan
from registry.sim.harness import pick_host

MAX_ATTEMPTS = 8
OP_TIMEOUT_US = 5_000_000
GROUPS = ("g1", "g2", "g3", "g4")
REMINDER_SHARE = 0.15
REMINDER_PERIODS_US = (1_000_000, 1_500_000, 2_000_000, 3_000_000)


@dataclass(slots=True)
class _Op:
    kind: str
    """register, unregister, join or leave."""
    command: Command
    names: tuple[str, ...]
    attempts: int = 0


def draw_specs(rng: random.Random, count: int, ids: list[str]) -> list[NameSpec]:
    specs = []
    for i in range(count):
        roll = rng.random()
        name = f"w{i:04d}"
        if roll < 0.12 and len(ids) >= 3:
            a, b, c = rng.sample(ids, 3)
            specs.append(NameSpec(name=name, kind="counter", priority=((a,), (b, c))))
        elif roll < 0.24:
            specs.append(NameSpec(name=name, kind="counter", roles=("web",)))
        elif roll < 0.34:
            specs.append(NameSpec(name=name, kind="counter", roles=("batch",)))
        elif roll < 0.42:
            specs.append(NameSpec(name=name, kind="session"))
        else:
            specs.append(NameSpec(name=name, kind="counter", args=b"%d" % i))
    return specs


class ClusterWorkload(ClientHooks):
    def __init__(
        self,
        sim: ClusterSim,
        rng: random.Random,
        *,
        names: int,
        checkpoints: bool = True,
        reminders: bool = True,
    ) -> None:
        self.sim = sim
        self._rng = rng
        self.specs = {s.name: s for s in draw_specs(rng, names, sim.config.ids)}
        self._all = sorted(self.specs)
        self._checkpoint_rng = random.Random(rng.getrandbits(64)) if checkpoints else None
        """Which worker checkpoints when (its own stream: the ops' draws stay apart);
        ``None``: no checkpoints, and no draw, so the seed's history is as it was before
        the model had them."""
        if reminders:  # its own stream too; ``False`` keeps older seeds' histories
            plan_rng = random.Random(rng.getrandbits(64))
            for name in self._all:
                if plan_rng.random() < REMINDER_SHARE:
                    sim.reminder_plans[name] = ReminderPlan(
                        first_us=plan_rng.randint(200_000, 1_500_000),
                        every_us=plan_rng.choice(REMINDER_PERIODS_US),
                    )
        self.writing = False
        """Start registry ops (off in the calm phase; counter calls go on)."""
        self.registered: set[str] = set()
        """Names the client believes are registered."""
        self._joined: set[tuple[str, str]] = set()
        self._busy: set[str] = set()
        self._hint = ""
        self._pending: dict[str, dict[int, _Op]] = {node: {} for node in sim.hosts}
        self.stats: dict[str, int] = {
            "ops_accepted": 0,
            "ops_acked": 0,
            "ops_failed": 0,
            "ops_uncertain": 0,
            "ops_not_committed": 0,
            "ops_gave_up": 0,
            "registrations_acked": 0,
            "unregistrations_acked": 0,
            "calls_ok": 0,
            "calls_missed": 0,
            "checkpoints_asked": 0,
        }

    def start(self, delay_us: int = 1_000_000) -> None:
        self.writing = True
        world = self.sim.world
        world.after(delay_us, self._next_op)
        world.after(delay_us, self._next_call)
        if self._checkpoint_rng is not None:
            world.after(delay_us, self._next_checkpoint)
        now = world.now_us
        for name in self._all:
            eligible = self.sim.eligible(self.specs[name])
            self.sim.observe(NameSpecified(at_us=now, name=name, eligible=eligible))

    # -- registry ops ------------------------------------------------------------------

    def _next_op(self) -> None:
        if not self.writing:
            return
        self._new_op()
        self.sim.world.after(self._rng.randint(40_000, 120_000), self._next_op)

    def _new_op(self) -> None:
        rng = self._rng
        free = [n for n in self._all if n not in self.registered and n not in self._busy]
        held = [n for n in self._all if n in self.registered and n not in self._busy]
        roll = rng.random()
        if free and (roll < 0.55 or not held):
            size = 1 if rng.random() < 0.2 else rng.randint(5, 40)
            names = tuple(sorted(rng.sample(free, min(size, len(free)))))
            command: Command = Register(specs=tuple(self.specs[n] for n in names))
            self._submit(_Op(kind="register", command=command, names=names))
        elif held and roll < 0.7:
            name = rng.choice(held)
            self._submit(_Op(kind="unregister", command=Unregister(name=name), names=(name,)))
        elif held:
            name, group = rng.choice(held), rng.choice(GROUPS)
            if (group, name) in self._joined:
                self._submit(
                    _Op(kind="leave", command=Leave(group=group, name=name), names=(name,))
                )
            else:
                self._submit(_Op(kind="join", command=Join(group=group, name=name), names=(name,)))

    def _pick(self) -> ClusterHost | None:
        return pick_host(self.sim.active(), self.sim.hosts.get(self._hint), self._rng)

    def _submit(self, op: _Op) -> None:
        self._busy.update(op.names)
        self._attempt(op)

    def _attempt(self, op: _Op) -> None:
        op.attempts += 1
        host = self._pick()
        if host is None or host.replica is None:
            self._retry(op, 100_000)
            return
        try:
            index = host.replica.propose(op.command)
        except NotLeader as exc:
            self._hint = exc.leader
            self._retry(op, self._rng.randint(20_000, 60_000))
            return
        except ProposalRejected:
            self._retry(op, 100_000)
            return
        self._hint = host.id
        self.stats["ops_accepted"] += 1
        self._pending[host.id][index] = op
        world = self.sim.world
        world.record("op", host.id, index, op.kind, op.names[0], len(op.names))
        if op.kind in ("register", "unregister"):
            self.sim.observe(
                OpAccepted(
                    at_us=world.now_us, node=host.id, op=op.kind, names=op.names, index=index
                )
            )
        if self.sim.config.faults.ack_on_accept:  # planted G3 bug: answered before commit
            del self._pending[host.id][index]
            self._busy.difference_update(op.names)
            self._acked(op, host.id, index)
            host.settle()
            return
        world.after(OP_TIMEOUT_US, lambda: self._timeout(host.id, index, op))
        host.settle()

    def _retry(self, op: _Op, delay_us: int) -> None:
        if op.attempts >= MAX_ATTEMPTS or not self.writing:
            self.stats["ops_gave_up"] += 1
            self._busy.difference_update(op.names)
            return
        self.sim.world.after(delay_us, lambda: self._attempt(op))

    def _timeout(self, node: str, index: int, op: _Op) -> None:
        if self._pending[node].get(index) is op:
            del self._pending[node][index]
            self._uncertain(op)

    def _uncertain(self, op: _Op) -> None:
        self.stats["ops_uncertain"] += 1
        self._busy.difference_update(op.names)
        if op.kind in ("register", "unregister"):
            now = self.sim.world.now_us
            self.sim.observe(OpUncertain(at_us=now, op=op.kind, names=op.names))

    # -- ClientHooks -------------------------------------------------------------------

    def on_applied(self, node: str, applied: Applied) -> None:
        op = self._pending[node].pop(applied.index, None)
        if op is None:
            return
        self._busy.difference_update(op.names)
        if applied.command != op.command:
            self.stats["ops_not_committed"] += 1
            return
        result = applied.result
        if not result.ok:
            self.stats["ops_failed"] += 1
            if op.kind == "register" and result.code is Code.ALREADY_EXISTS and len(op.names) == 1:
                self.registered.add(op.names[0])
            elif op.kind == "unregister" and result.code is Code.NOT_FOUND:
                self.registered.discard(op.names[0])
            return
        self._acked(op, node, applied.index)

    def _acked(self, op: _Op, node: str, index: int) -> None:
        self.stats["ops_acked"] += 1
        now = self.sim.world.now_us
        if op.kind == "register":
            self.stats["registrations_acked"] += len(op.names)
            self.registered.update(op.names)
        elif op.kind == "unregister":
            self.stats["unregistrations_acked"] += 1
            self.registered.difference_update(op.names)
            self._joined = {(g, n) for g, n in self._joined if n not in op.names}
        elif op.kind == "join":
            assert isinstance(op.command, Join)
            self._joined.add((op.command.group, op.command.name))
        else:
            assert isinstance(op.command, Leave)
            self._joined.discard((op.command.group, op.command.name))
        if op.kind in ("register", "unregister"):
            self.sim.observe(OpAcked(at_us=now, node=node, op=op.kind, names=op.names, index=index))

    def on_restored(self, node: str, index: int) -> None:
        pending = self._pending[node]
        for skipped in sorted(i for i in pending if i <= index):
            self._uncertain(pending.pop(skipped))

    def on_crash(self, node: str) -> None:
        pending = self._pending[node]
        for index in sorted(pending):
            self._uncertain(pending.pop(index))

    # -- counter calls -----------------------------------------------------------------

    def _next_call(self) -> None:
        self._call()
        self.sim.world.after(self._rng.randint(5_000, 15_000), self._next_call)

    def _call(self) -> None:
        rng = self._rng
        name = self._all[rng.randrange(len(self._all))]
        if name not in self.registered:
            return
        active = self.sim.active()
        if not active:
            return
        view = rng.choice(active).view
        assert view is not None
        record = view.state.registered(name)
        target = self.sim.hosts.get(record.holder) if record is not None else None
        runtime = target.runtime if target is not None else None
        if runtime is None or runtime.call(name) is None:
            self.stats["calls_missed"] += 1
        else:
            self.stats["calls_ok"] += 1

    # -- checkpoints -------------------------------------------------------------------

    def _next_checkpoint(self) -> None:
        """Every 20–60 ms a registered name's worker, where it runs, checkpoints its
        count (``NodeRuntime.checkpoint``); not in the calm phase, whose goal is a log that
        stands still (resends of earlier ones go on)."""
        rng = self._checkpoint_rng
        assert rng is not None
        name = self._all[rng.randrange(len(self._all))]
        if self.writing and name in self.registered:
            for host in self.sim.hosts.values():
                if host.runtime is not None and host.runtime.checkpoint(name):
                    self.stats["checkpoints_asked"] += 1
        self.sim.world.after(rng.randint(20_000, 60_000), self._next_checkpoint)
