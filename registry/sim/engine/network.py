"""A lossy, reordering, partitionable network between simulated nodes.

Why this shape: partitions are a set of blocked *directed* links, so every topology the
nemesis needs — symmetric split, an isolated node, a non-transitive bridge, a one-way cut —
is just a different set of pairs. A link is checked when a message is sent and again
when it would be delivered (a cut made while a packet is in flight drops it, as an
nftables ``drop`` rule would). Delays are mostly LAN-fast with a slow tail; the tail is
what reorders messages.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

Link = tuple[str, str]
"""A directed link (src, dst)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkConfig:
    loss: float = 0.01
    """Probability that a message is silently lost. Default 0.01."""

    duplicate: float = 0.01
    """Probability that a delivered message is delivered a second time. Default 0.01."""

    fast_delay_us: tuple[int, int] = (500, 5_000)
    """Uniform delay range of most messages, in microseconds. Default 0.5–5 ms."""

    slow_fraction: float = 0.04
    """Fraction of messages that take the slow path (and so get reordered). Default 0.04."""

    slow_delay_us: tuple[int, int] = (10_000, 60_000)
    """Uniform delay range of slow messages, in microseconds. Default 10–60 ms."""


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    lost: int = 0
    blocked: int = 0
    duplicated: int = 0
    delivered: int = 0


class Network:
    """Decides, for each message, whether and when it arrives. Holds no messages itself
    (the world's event heap does), so it stays independent of what is being sent."""

    def __init__(self, config: NetworkConfig, rng: random.Random) -> None:
        self.config = config
        self.loss = config.loss
        """Current loss probability (the nemesis raises it for loss bursts)."""
        self._rng = rng
        self._blocked: set[Link] = set()
        self.stats = NetworkStats()
        self.listeners: list[Callable[[], None]] = []
        """Called after every topology change (heal, block, split, bridge, one-way)."""

    # -- topology ----------------------------------------------------------------------

    def is_blocked(self, src: str, dst: str) -> bool:
        return (src, dst) in self._blocked

    def blocked_links(self) -> list[Link]:
        return sorted(self._blocked)

    def heal(self) -> None:
        self._blocked.clear()
        self._changed()

    def block(self, links: Iterable[Link]) -> None:
        self._blocked.update(links)
        self._changed()

    def split(self, groups: Sequence[Sequence[str]]) -> None:
        """Replace the topology: nodes talk only within their own group."""
        self.heal()
        for i, left in enumerate(groups):
            for j, right in enumerate(groups):
                if i != j:
                    self.block((a, b) for a in left for b in right)

    def bridge(self, left: Sequence[str], bridge: str, right: Sequence[str]) -> None:
        """Replace the topology: ``left`` and ``right`` talk only through ``bridge``
        (L↔b and b↔R open, L↮R) — connectivity that is not transitive."""
        self.heal()
        self.block((a, b) for a in left for b in right)
        self.block((b, a) for a in left for b in right)
        del bridge  # the bridge keeps every link; named for the reader

    def one_way(self, src: str, dst: str) -> None:
        """Block ``src → dst`` only; ``dst → src`` stays open."""
        self._blocked.add((src, dst))
        self._changed()

    def _changed(self) -> None:
        for listener in self.listeners:
            listener()

    # -- delivery ----------------------------------------------------------------------

    def plan(self, src: str, dst: str) -> tuple[int, ...]:
        """Delays (µs) of the copies of one message that will reach ``dst``: none if it
        is blocked or lost, two if it is duplicated."""
        stats = self.stats
        stats.sent += 1
        if (src, dst) in self._blocked:
            stats.blocked += 1
            return ()
        rng = self._rng
        if self.loss and rng.random() < self.loss:
            stats.lost += 1
            return ()
        first = self._delay()
        if self.config.duplicate and rng.random() < self.config.duplicate:
            stats.duplicated += 1
            return (first, self._delay())
        return (first,)

    def _delay(self) -> int:
        config = self.config
        rng = self._rng
        slow = rng.random() < config.slow_fraction
        low, high = config.slow_delay_us if slow else config.fast_delay_us
        return rng.randint(low, high)
