"""What the Raft harness and the cluster harness share about their hosts and phases.

``Sim`` is what both harnesses are made of: one world, the hosts on it (the world's
``Process`` objects), the checker suite their observations go to. Omniscient queries
(the runner, the client model and the calm phase may look at every node; the checkers
may not): which hosts a client call can reach now (``active_hosts``), which of them leads
(``highest_leader``), which one a client sends to (``pick_host``); and the start of the
calm phase (``CalmPhase``), the same in both families. A host reads its node's role and
term in one place, ``leading_term``, so the families' reads of the core stay few.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from registry.sim.checks.base import Suite
from registry.sim.checks.phases import PhaseStarted
from registry.sim.engine.clock import ClockConfig
from registry.sim.engine.nemesis import Nemesis
from registry.sim.engine.network import NetworkConfig
from registry.sim.engine.world import Process, World


class Host(Protocol):
    @property
    def id(self) -> str: ...

    def is_up(self) -> bool:
        """Booted and not crashed (it may be paused)."""
        ...

    def leading_term(self) -> int | None:
        """The term it leads, if it is up and acts as leader."""
        ...


H = TypeVar("H", bound=Host)


def active_hosts(hosts: Iterable[H], world: World[Any]) -> list[H]:
    """Hosts that are up and not paused: the ones a client call can reach now."""
    paused = world.is_paused
    return [h for h in hosts if h.is_up() and not paused(h.id)]


def highest_leader(hosts: Iterable[H]) -> H | None:
    """The host leading the highest term among ``hosts`` (the first one on a tie)."""
    best: H | None = None
    best_term = -1
    for host in hosts:
        term = host.leading_term()
        if term is not None and term > best_term:
            best, best_term = host, term
    return best


def pick_host(reachable: Sequence[H], hinted: H | None, rng: random.Random) -> H | None:
    """Where a client sends: the node it was told leads, if reachable; else any."""
    if hinted is not None and hinted in reachable:
        return hinted
    return rng.choice(reachable) if reachable else None


M = TypeVar("M")
M_contra = TypeVar("M_contra", contravariant=True)


class SimHost(Host, Process[M_contra], Protocol[M_contra]):
    """A host the world can drive and the queries can read."""


HostT = TypeVar("HostT", bound=SimHost[Any])


class Sim(Generic[HostT, M]):
    """One run's world, its hosts (added by the family's constructor) and checkers."""

    def __init__(
        self,
        *,
        rng: random.Random,
        clock: ClockConfig,
        network: NetworkConfig,
        suite: Suite,
        trace_key: Callable[[M], object],
    ) -> None:
        self.suite = suite
        self.world: World[M] = World(rng=rng, clock=clock, network=network, trace_key=trace_key)
        self.hosts: dict[str, HostT] = {}

    def boot(self) -> None:
        for node_id, host in self.hosts.items():
            self.world.add(node_id, host)

    def observe(self, obs: object) -> None:
        self.suite.feed(obs)

    def active(self) -> list[HostT]:
        """Hosts that are up and not paused: the ones a client call can reach now."""
        return active_hosts(self.hosts.values(), self.world)

    def leader(self) -> HostT | None:
        """The active leader with the highest term, if any."""
        return highest_leader(self.active())


class _Sim(Protocol):
    @property
    def world(self) -> World[Any]: ...

    def observe(self, obs: PhaseStarted) -> None: ...


class _Clients(Protocol):
    writing: bool


S = TypeVar("S", bound=_Sim)
C = TypeVar("C", bound=_Clients)


class CalmPhase(Generic[S, C]):
    """The end of every run: the nemesis heals everything (network, crashed nodes, loss),
    clients stop writing, ``PhaseStarted`` is observed, and the family's ``poll`` runs
    every ``poll_us`` until it shows its goal (and stops the world) or the bound ends."""

    poll_us: ClassVar[int]

    def __init__(self, sim: S, workload: C, nemesis: Nemesis, *, bound_us: int) -> None:
        self._sim = sim
        self._workload = workload
        self._nemesis = nemesis
        self.bound_us = bound_us
        self.start_us = 0

    def start(self) -> None:
        world = self._sim.world
        self._nemesis.calm()
        self._workload.writing = False
        self.start_us = world.now_us
        self._sim.observe(PhaseStarted(at_us=world.now_us, bound_us=self.bound_us))
        world.every(self.poll_us, self.poll)

    def poll(self) -> None:
        raise NotImplementedError
