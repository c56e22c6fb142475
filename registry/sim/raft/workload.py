"""Clients of the Raft harness: writes, reads, leadership transfers, membership changes.

How a client behaves (and why it is enough to test durability):

- Every 50–150 ms of true time it proposes a unique value ``v<seed>-<n>`` at the node it
  believes is leader (a random live node when it has no idea). ``NotLeader`` is a
  rejection whose hint it follows next time.
- A proposal is *acknowledged* when the node that accepted it applies that index with
  that data — the moment a real server would answer the client. Only then is it
  reported (``Acked``) for the durability checker; a proposal whose node crashed, or
  whose index got another value or was skipped by a snapshot, simply stays unknown.
- Now and then it sends a burst of 10–80 writes at once (to exercise batching, flow
  control and followers that fall behind into snapshots), or issues ``read_index`` or
  ``transfer_leadership``.
- With five nodes it also cycles membership: remove a voter, re-add it as learner,
  promote it back — one change at a time, retried through ``ConfChangeInProgress`` and
  leader changes.

The client model is omniscient where that only saves plumbing (it finds the current
leader for transfers and membership changes by looking), never where it would hide a
bug: writes go through hints and rejections like a real client's.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from registry.core.errors import NotLeader, ProposalRejected
from registry.core.messages import ConfChange, ConfChangeType, Entry
from registry.sim.harness import pick_host
from registry.sim.raft.harness import AppHooks, RaftHost, RaftSim
from registry.sim.raft.observations import Acked, ReadRequested


class RaftWorkload(AppHooks):
    def __init__(self, sim: RaftSim, rng: random.Random, *, tag: str, membership: bool) -> None:
        self.sim = sim
        self._rng = rng
        self._tag = tag
        self._membership = membership
        self.writing = False
        """Issue new writes, reads and transfers (off during the calm phase)."""
        self._hint = ""
        self._n = 0
        self._context = 0
        self._pending: dict[str, dict[int, bytes]] = {h: {} for h in sim.hosts}
        self._cycle: tuple[str, str, bool] | None = None
        """Membership change in progress: (node, "remove" | "add", replace its machine)."""
        self.on_ack: Callable[[bytes, int], None] = lambda data, index: None
        self.stats: dict[str, int] = {
            "proposed": 0,
            "acked": 0,
            "rejected": 0,
            "reads": 0,
            "transfers": 0,
            "conf_changes": 0,
            "membership_cycles": 0,
            "machines_replaced": 0,
        }

    def start(self) -> None:
        self.writing = True
        self.sim.world.after(self._rng.randint(50_000, 150_000), self._op)
        if self._membership:
            self.sim.world.after(self._rng.randint(500_000, 2_000_000), self._membership_tick)

    # -- client operations -------------------------------------------------------------

    def _op(self) -> None:
        if not self.writing:
            return
        roll = self._rng.random()
        if roll < 0.08:
            self._read()
        elif roll < 0.095:
            self._transfer()
        elif roll < 0.11:
            self._write(self._rng.randint(10, 80))
        else:
            self._write(1)
        self.sim.world.after(self._rng.randint(50_000, 150_000), self._op)

    def _write(self, count: int) -> None:
        """``count`` writes to one node, handed to Raft before its next Ready (so they
        are batched as a real server batches concurrent requests)."""
        host = self._pick()
        if host is None:
            return
        for _ in range(count):
            self._n += 1
            if self.propose(host, f"v{self._tag}-{self._n}".encode(), settle=False) is None:
                break
        host.settle()

    def _pick(self) -> RaftHost | None:
        return pick_host(self.sim.active(), self.sim.hosts.get(self._hint), self._rng)

    def propose(self, host: RaftHost, data: bytes, *, settle: bool = True) -> int | None:
        """Propose ``data`` at ``host``; the index, or ``None`` when rejected."""
        assert host.node is not None
        self.stats["proposed"] += 1
        try:
            index = host.node.propose(data)
        except NotLeader as exc:
            self.stats["rejected"] += 1
            self._hint = exc.leader
            return None
        except ProposalRejected:
            self.stats["rejected"] += 1
            return None
        self._hint = host.id
        self._pending[host.id][index] = data
        self.sim.world.record("proposed", host.id, index, data)
        if settle:
            host.settle()
        return index

    def _read(self) -> None:
        host = self._pick()
        if host is None or host.node is None:
            return
        self._context += 1
        self.stats["reads"] += 1
        now = self.sim.world.now_us
        self.sim.observe(ReadRequested(at_us=now, node=host.id, context=self._context))
        try:
            host.node.read_index(self._context)
        except ProposalRejected:
            return
        host.settle()

    def _transfer(self) -> None:
        leader = self.sim.leader()
        if leader is None or leader.node is None:
            return
        voters = sorted(leader.node.conf.voters - {leader.id})
        if not voters:
            return
        target = self._rng.choice(voters)
        self.stats["transfers"] += 1
        self.sim.world.record("transfer", leader.id, target)
        try:
            leader.node.transfer_leadership(target)
        except ProposalRejected:
            return
        leader.settle()

    # -- membership --------------------------------------------------------------------

    def _membership_tick(self) -> None:
        if self.writing or self._cycle is not None:
            self._membership_step()
            self.sim.world.after(self._rng.randint(300_000, 1_500_000), self._membership_tick)

    def _membership_step(self) -> None:
        """Derive the next change from the leader's configuration, so that retries after
        a lost or truncated change are automatic."""
        leader = self.sim.leader()
        if leader is None or leader.node is None:
            return
        conf = leader.node.conf
        if self._cycle is None:
            if not self.writing or self._rng.random() < 0.5:
                return
            victim = self._rng.choice(sorted(conf.voters))
            self._cycle = (victim, "remove", self._rng.random() < 0.5)
            self.stats["membership_cycles"] += 1
        node, phase, replace = self._cycle
        if phase == "remove":
            if node in conf.members():
                self._change(leader, ConfChange(type=ConfChangeType.REMOVE, node=node))
                return
            self._cycle = (node, "add", replace)
        if node not in conf.members():
            added = self._change(leader, ConfChange(type=ConfChangeType.ADD_LEARNER, node=node))
            if added and replace:
                self._replace_machine(node)
                self._cycle = (node, "add", False)
        elif node in conf.learners:
            self._change(leader, ConfChange(type=ConfChangeType.ADD_VOTER, node=node))
        else:
            self._cycle = None

    def _change(self, leader: RaftHost, change: ConfChange) -> bool:
        assert leader.node is not None
        try:
            index = leader.node.propose_conf_change(change)
        except ProposalRejected:
            return False
        self.stats["conf_changes"] += 1
        self.sim.world.record("conf", leader.id, index, change.encode())
        leader.settle()
        return True

    def _replace_machine(self, node: str) -> None:
        """Give ``node`` a blank disk and a joining configuration (no bootstrap voters),
        as an operator does when a removed member comes back on a new machine. Safe only
        because its removal is committed — the leader just accepted the next change."""
        world = self.sim.world
        was_up = world.is_up(node)
        world.crash(node)
        self.sim.hosts[node].replace_machine()
        self.stats["machines_replaced"] += 1
        if was_up:
            world.restart(node)

    # -- AppHooks ----------------------------------------------------------------------

    def on_applied(self, host: str, entry: Entry) -> None:
        data = self._pending[host].pop(entry.index, None)
        if data is None or data != entry.data:
            return
        self.stats["acked"] += 1
        now = self.sim.world.now_us
        self.sim.observe(Acked(at_us=now, node=host, index=entry.index, data=data))
        self.on_ack(data, entry.index)

    def on_restored(self, host: str, index: int) -> None:
        pending = self._pending[host]
        for stale in [i for i in pending if i <= index]:
            del pending[stale]

    def on_crash(self, host: str) -> None:
        self._pending[host].clear()
