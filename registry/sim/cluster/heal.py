"""The heal phase of a cluster run: stop the chaos, then demand convergence (G5).

After the nemesis phase the network heals, every crashed node restarts, loss returns to
normal and clients stop registry ops (counter calls go on, so handoffs carry live
counts). Every ``POLL_US`` the phase checks whether the cluster has converged:

- every node is up, unpaused, holds its lease, and is an up member of the view in its
  current incarnation; every learner is in the leader's Raft configuration;
- every replica has applied what the leader had committed one poll earlier (workers'
  reminders keep committing while the cluster is calm: a log that must stand still
  would never converge; a replica that stays behind still fails);
- no name waits, none is half-unregistered, no handoff is in flight;
- every registered name runs exactly once, on its owner by an *independent placement
  oracle* (``oracle_owner``: a few lines over uhashring, built from the view and the
  harness's own roles and kinds — not the implementation's ``Placement``) with the
  state's token, and no runtime runs anything else.

Convergence must then *hold* for ``STABLE_US`` (a cluster that converges and swings back
has not converged): ``GoalReached`` is observed with the first instant of the stretch that
held, and the run stops; if that never happens within the bound, ``describe()`` says what
is still wrong.
"""

from __future__ import annotations

import functools

from uhashring import HashRing

from registry.core.commands import NameSpec
from registry.core.placement import DEFAULT_VNODES
from registry.sim.checks.phases import GoalReached
from registry.sim.cluster.harness import ClusterConfig, ClusterSim
from registry.sim.cluster.workload import ClusterWorkload
from registry.sim.engine.nemesis import Nemesis
from registry.sim.harness import CalmPhase

POLL_US = 50_000
STABLE_US = 1_000_000
"""How long convergence must hold before it counts (true µs). Default 1 s."""


def oracle_owner(spec: NameSpec, up: set[str], config: ClusterConfig) -> str | None:
    """Where the design says ``spec`` belongs (DESIGN §3 Placement), from first
    principles: the up members that carry its roles and run its kind; the first tier of
    its priority list with such a member; the ketama ring over those."""
    eligible = sorted(
        node
        for node in up
        if set(spec.roles) <= set(config.roles.get(node, ()))
        and (not config.kinds.get(node) or spec.kind in config.kinds[node])
    )
    if spec.priority is not None:
        tiers = ([n for n in eligible if n in tier] for tier in spec.priority)
        eligible = next((t for t in tiers if t), [])
    if len(eligible) <= 1:
        return eligible[0] if eligible else None
    owner: str = _ring(tuple(eligible)).get_node(spec.name)
    return owner


@functools.lru_cache(maxsize=256)
def _ring(nodes: tuple[str, ...]) -> HashRing:
    """Building a ketama ring costs ~4 ms: one per node set, not one per name."""
    return HashRing(nodes=list(nodes), hash_fn="ketama", vnodes=DEFAULT_VNODES)


class HealPhase(CalmPhase[ClusterSim, ClusterWorkload]):
    poll_us = POLL_US

    def __init__(
        self, sim: ClusterSim, workload: ClusterWorkload, nemesis: Nemesis, *, bound_us: int
    ) -> None:
        super().__init__(sim, workload, nemesis, bound_us=bound_us)
        self.converged_us: int | None = None
        self._good_since: int | None = None
        """Start of the current stretch during which convergence held."""
        self._commit_before: int | None = None
        """The leader's commit index at the previous poll."""

    def poll(self) -> None:
        if self.converged_us is not None:
            return
        world = self._sim.world
        problem = self.problem()
        leader = self._sim.leader()
        if leader is not None and leader.view is not None:
            self._commit_before = leader.view.commit_index
        if problem is not None:
            self._good_since = None
            return
        if self._good_since is None:
            self._good_since = world.now_us
        if world.now_us - self._good_since >= STABLE_US:
            self.converged_us = self._good_since
            self._sim.observe(GoalReached(at_us=self._good_since))
            world.stop()

    def problem(self) -> str | None:
        """What keeps the cluster from having converged, or ``None``."""
        sim = self._sim
        hosts = sim.hosts
        active = sim.active()
        if len(active) != len(hosts):
            down = sorted(set(hosts) - {h.id for h in active})
            return f"not up: {down}"
        leader = sim.leader()
        if leader is None or leader.view is None:
            return "no leader"
        lead = leader.view
        commit = lead.commit_index
        if self._commit_before is not None:
            commit = min(commit, self._commit_before)
        conf = lead.raft_members()
        state = lead.state
        for host in active:
            view = host.view
            assert view is not None
            if host.id not in conf:
                return f"{host.id} is not in the Raft configuration"
            if view.applied_index < commit:
                return f"{host.id} applied {view.applied_index} of {commit}"
            member = state.members.get(host.id)
            if member is None or not member.up or member.incarnation != view.incarnation:
                return f"{host.id} (incarnation {view.incarnation}) is not an up member"
            if not view.has_lease():
                return f"{host.id} holds no lease"
        waiting = state.waiting()
        if waiting:
            return f"{len(waiting)} names wait, e.g. {waiting[0]!r}"
        runs: dict[str, list[tuple[str, int]]] = {}
        for host in active:
            assert host.runtime is not None
            for name, act in sorted(host.runtime.active.items()):
                if act.handoff is not None:
                    return f"{name!r} is being handed off by {host.id}"
                runs.setdefault(name, []).append((host.id, act.token))
        up = {n for n, m in state.members.items() if m.up and not m.draining}
        for name, record in sorted(state.names.items()):
            if record.unregistering:
                return f"{name!r} is still being unregistered"
            owner = oracle_owner(record.spec, up, sim.config)
            here = runs.pop(name, [])
            if here != [(owner, record.token)]:
                return (
                    f"{name!r} should run once on {owner} with token {record.token} "
                    f"(holder {record.holder or '-'}), runs on {here or 'no node'}"
                )
        if runs:
            name = min(runs)
            return f"{name!r} runs on {runs[name]} but is not registered"
        return None

    def describe(self) -> str:
        return self.problem() or "converged"
