"""Run registry cluster simulation seeds and summarize them (``registry sim cluster``).

One seed is one ``random.Random(seed)``; every other RNG (cluster shape, world, nemesis,
clients) is a child of it, so a seed replays exactly (``trace_digest`` proves it). Per
seed it draws the cluster's shape: 3 or 5 bootstrap voters (the other nodes are learner
members), node roles and worker kinds, and how workers answer ``begin_handoff`` (some
seeds answer ``Restart()`` now and then, some answer after the deadline).

A run is ``duration_s`` of nemesis with clients, then the heal phase (``heal``)
of at most ``calm_bound_s``. An exception escaping the core or the harness ends the seed
and is reported as a violation.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

from registry.core.timing import MembershipConfig
from registry.sim.checks.phases import RunEnded
from registry.sim.cluster.checkers import (
    ClusterSuite,
    Failover,
    Fencing,
    HandoffState,
    Heal,
    Registrations,
    SingleActivation,
)
from registry.sim.cluster.durable_checkers import Checkpoints, Reminders
from registry.sim.cluster.harness import ClusterConfig, ClusterSim
from registry.sim.cluster.heal import HealPhase
from registry.sim.cluster.observations import FinalRegistry, NodeRegistry
from registry.sim.cluster.runtime import HandoffBehaviour
from registry.sim.cluster.transfers import schedule_transfers
from registry.sim.cluster.workload import ClusterWorkload
from registry.sim.engine.nemesis import Nemesis
from registry.sim.faults import NO_FAULTS, SimFaults
from registry.sim.runner import SeedOutcome, Totals, child_rngs, drive, leader_of, totals

DEFAULT_DURATION_S = 30.0
DEFAULT_CALM_BOUND_S = 30.0
DEFAULT_NAMES = 200


def draw_config(
    rng: random.Random,
    nodes: int,
    membership: MembershipConfig | None = None,
    faults: SimFaults = NO_FAULTS,
    ignore_stop: float = 0.0,
) -> ClusterConfig:
    """The cluster's shape for one seed. ``ignore_stop``: the share of workers that block
    (see ``HandoffBehaviour``); off by default (tests/sim/test_planted_bugs.py runs it)."""
    ids = [f"n{i}" for i in range(1, nodes + 1)]
    voters = 5 if nodes >= 5 and rng.random() < 0.5 else 3
    roles: dict[str, tuple[str, ...]] = {}
    kinds: dict[str, tuple[str, ...]] = {}
    for node in ids:
        roles[node] = rng.choice((("web",), ("batch",), ("batch", "web")))
        kinds[node] = () if rng.random() < 0.6 else ("counter",)
    for role in ("web", "batch"):  # at least two hosts per role, so names can fail over
        while sum(role in r for r in roles.values()) < 2:
            node = rng.choice([n for n in ids if role not in roles[n]])
            roles[node] = tuple(sorted({*roles[node], role}))
    while sum(not k for k in kinds.values()) < 2:
        kinds[rng.choice([n for n in ids if kinds[n]])] = ()
    style = rng.random()
    handoff = HandoffBehaviour(
        late=0.1 if style < 0.25 else 0.0,
        restart=0.15 if 0.25 <= style < 0.5 else 0.0,
        ignore_stop=ignore_stop,
    )
    return ClusterConfig(
        nodes=nodes,
        voters=voters,
        roles=roles,
        kinds=kinds,
        handoff=handoff,
        membership=membership,
        faults=faults,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSeedResult(SeedOutcome):
    kind = "cluster"
    default_calm_bound_s = DEFAULT_CALM_BOUND_S

    names: int
    shape: str
    """Voters, learners and handoff style, e.g. ``3 voters + 2 learners, late handoffs``."""
    duplicates: int
    """G1 violations (two live activations of a name at once)."""
    stale_tokens: int
    lost_registrations: int
    failover_s: tuple[float, ...]
    """G4 samples: loss → running again, seconds."""
    failover_leader_s: tuple[float, ...]
    """The samples where the lost node was the leader."""
    heal_converge_s: float | None
    starts: dict[str, int]
    """Activations by start reason."""
    handoffs: int
    transfers: bool = False
    """Whether the run had leadership transfers mixed in (``--transfers``)."""

    def replay_flags(self) -> str:
        return f" --names {self.names}" + (" --transfers" if self.transfers else "")


def run_cluster_seed(
    seed: int,
    nodes: int = 5,
    names: int = DEFAULT_NAMES,
    duration_s: float = DEFAULT_DURATION_S,
    *,
    calm_bound_s: float = DEFAULT_CALM_BOUND_S,
    membership: MembershipConfig | None = None,
    keep_timeline: bool = False,
    faults: SimFaults = NO_FAULTS,
    ignore_stop: float = 0.0,
    checkpoints: bool = True,
    reminders: bool = True,
    transfers: bool = False,
) -> ClusterSeedResult:
    """Run one seed. ``membership`` overrides the member timing (the unsafe switch);
    ``faults`` plants bugs (``registry.sim.faults``, for the tests that prove the checkers
    fail). ``checkpoints=False``: workers take none, and the seed replays the history it
    had before the model had checkpoints (regression seeds found then); so does
    ``reminders=False`` for the model before reminders. ``transfers``: the leader hands
    leadership over now and then (``registry.sim.cluster.transfers``)."""
    wall_start = time.perf_counter()
    shape_rng, world_rng, nemesis_rng, client_rng, transfer_rng = child_rngs(seed, 5)
    config = draw_config(shape_rng, nodes, membership, faults, ignore_stop)
    suite = ClusterSuite()
    sim = ClusterSim(rng=world_rng, config=config, suite=suite)
    workload = ClusterWorkload(
        sim, client_rng, names=names, checkpoints=checkpoints, reminders=reminders
    )
    sim.hooks = workload
    nemesis = Nemesis(sim.world, nemesis_rng, focus=leader_of(sim))
    heal = HealPhase(sim, workload, nemesis, bound_us=round(calm_bound_s * 1e6))
    duration_us = round(duration_s * 1e6)

    def start() -> None:
        sim.boot()
        workload.start()
        nemesis.start(until_us=duration_us)
        if transfers:
            schedule_transfers(sim, transfer_rng, until_us=duration_us)

    escaped = drive(
        sim.world,
        start=start,
        duration_us=duration_us,
        calm=heal.start,
        calm_bound_us=heal.bound_us,
    )
    finish(sim, heal)
    violations = escaped + suite.violations()
    failover = suite.get(Failover)
    heal_checker = suite.get(Heal)
    net = sim.world.network.stats
    stats = dict(workload.stats)
    stats.update(
        {f"nemesis_{k}": v for k, v in nemesis.counts.items()},
        failover_censored=failover.censored,
        failover_restarted=failover.restarted,
        failover_unbridged=failover.unbridged,
        **{f"failover_cancelled_{k.replace(' ', '_')}": v for k, v in failover.cancelled.items()},
        registrations_checked=suite.get(Registrations).checked,
        messages_sent=net.sent,
        messages_lost=net.lost,
        snapshots_installed=sim.snapshots_installed,
        stale_compactions=sim.stale_compactions,
        elections=sim.elections,
        transfers=sim.transfers,
        fences=sim.fences,
        late_handoff_answers=sim.ledger.late_answers,
        hosts_killed=sim.ledger.kills,
        watchdog_exits=sim.ledger.watchdog_exits,
        **{f"checkpoints_{k}": v for k, v in sim.ledger.checkpoints.items()},
        checkpoints_applied=suite.get(Checkpoints).applied,
        checkpoints_refused_by_log=suite.get(Checkpoints).refused,
        checkpoint_restores=suite.get(Checkpoints).restores,
        **{f"reminders_{k}": v for k, v in sim.ledger.reminders.items()},
        reminder_duplicates=suite.get(Reminders).duplicates,
        reminder_max_firings=suite.get(Reminders).max_firings,
        reminder_owed_at_start=suite.get(Reminders).owed_at_start,
        reminder_max_late_ms=max(suite.get(Reminders).late_us, default=0) // 1000,
        reminder_judged_running=suite.get(Reminders).judged_running,
    )
    learners = nodes - config.voters
    style = (
        ", late handoffs"
        if config.handoff.late
        else ", restart handoffs"
        if config.handoff.restart
        else ""
    ) + (", blocking workers" if config.handoff.ignore_stop else "")
    style += ", leadership transfers" if transfers else ""
    return ClusterSeedResult(
        seed=seed,
        nodes=nodes,
        names=names,
        duration_s=duration_s,
        calm_bound_s=calm_bound_s,
        shape=f"{config.voters} voters" + (f" + {learners} learners" if learners else "") + style,
        violations=tuple(violations),
        duplicates=suite.get(SingleActivation).count,
        stale_tokens=suite.get(Fencing).count,
        lost_registrations=suite.get(Registrations).count,
        failover_s=tuple(latency / 1e6 for latency in failover.latencies_us),
        failover_leader_s=tuple(latency / 1e6 for latency in failover.leader_latencies_us),
        heal_converge_s=None if heal_checker.elapsed_us is None else heal_checker.elapsed_us / 1e6,
        starts=dict(sim.ledger.starts),
        handoffs=suite.get(HandoffState).handoffs,
        transfers=transfers,
        sim_seconds=sim.world.now_us / 1e6,
        wall_seconds=time.perf_counter() - wall_start,
        events=sim.world.events,
        trace_digest=sim.world.trace_digest(),
        stats=stats,
        timeline=tuple(nemesis.timeline) if violations or keep_timeline else (),
    )


def finish(sim: ClusterSim, heal: HealPhase) -> None:
    """Close every activation at the end of the run and report the final registry."""
    now = sim.world.now_us
    detail = heal.describe()  # before the activations are closed below
    live = []
    for host in sim.hosts.values():
        if host.runtime is not None:
            for name in sorted(host.runtime.active):
                host.runtime.end(name, "run-ended")
        if host.view is not None:
            state = host.view.state
            names = tuple(n for n, r in sorted(state.names.items()) if not r.unregistering)
            live.append(NodeRegistry(node=host.id, registered=names))
    sim.observe(FinalRegistry(at_us=now, nodes=tuple(live)))
    sim.observe(RunEnded(at_us=now, detail=detail))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSummary(Totals):
    names: int
    duplicates: int
    lost_registrations: int
    stale_tokens: int
    failover: tuple[float, ...]
    failover_leader: tuple[float, ...]
    failover_cancelled: int
    """Failover samples cancelled (no failover owed any more)."""
    heal: tuple[float, ...]
    starts: dict[str, int]
    handoffs: int
    checkpoints: dict[str, int]
    """Checkpoints kept by the log, refused by it (stale), and restores judged."""
    reminders: dict[str, int]
    """Reminder firings, duplicates, the most firings of one period, periods caught up
    at a start, the latest catch-up (ms)."""


REMINDER_STATS = {
    "fired": "reminders_fired",
    "duplicates": "reminder_duplicates",
    "caught_up": "reminder_owed_at_start",
}
CHECKPOINT_STATS = {
    "applied": "checkpoints_applied",
    "refused_stale": "checkpoints_refused_by_log",
    "restores": "checkpoint_restores",
}


def summarize(results: Sequence[ClusterSeedResult]) -> ClusterSummary:
    starts: dict[str, int] = {}
    for r in results:
        for reason, count in r.starts.items():
            starts[reason] = starts.get(reason, 0) + count
    return ClusterSummary(
        **totals(results),
        names=results[0].names if results else 0,
        duplicates=sum(r.duplicates for r in results),
        lost_registrations=sum(r.lost_registrations for r in results),
        stale_tokens=sum(r.stale_tokens for r in results),
        failover=tuple(s for r in results for s in r.failover_s),
        failover_leader=tuple(s for r in results for s in r.failover_leader_s),
        failover_cancelled=sum(r.stats.get("failover_censored", 0) for r in results),
        heal=tuple(r.heal_converge_s for r in results if r.heal_converge_s is not None),
        starts=starts,
        handoffs=sum(r.handoffs for r in results),
        checkpoints={
            label: sum(r.stats.get(key, 0) for r in results)
            for label, key in CHECKPOINT_STATS.items()
        },
        reminders={
            **{
                label: sum(r.stats.get(key, 0) for r in results)
                for label, key in REMINDER_STATS.items()
            },
            "max_firings": max(
                (r.stats.get("reminder_max_firings", 0) for r in results), default=0
            ),
            "max_late_ms": max(
                (r.stats.get("reminder_max_late_ms", 0) for r in results), default=0
            ),
        },
    )
