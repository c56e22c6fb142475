"""Per-node clocks whose *rate* drifts from true time.

Why: every timing guarantee in the design (leader lease, member lease, fencing) is stated
for clock rate drift up to ``max_drift``. Time in the simulator is *true* time in integer
microseconds; each node's oscillator runs at ``rate`` ∈ [1 - max_drift, 1 + max_drift]
relative to it, so a node tick lasts ``tick_us * rate`` true microseconds. A third of the
nodes sit exactly at a bound, because the extremes are where lease arithmetic breaks.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class ClockConfig:
    tick_us: int = 50_000
    """Nominal tick length in true microseconds. Default 50 000 (50 ms)."""

    max_drift: float = 0.05
    """Largest rate deviation of any node clock (fraction). Default 0.05."""

    extreme_fraction: float = 0.34
    """Probability that a node's rate is drawn exactly at ±max_drift instead of uniformly
    in between. Default 0.34."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeClock:
    """One incarnation's oscillator. A restart draws a new one (a new process, a new
    phase; possibly another machine)."""

    rate: float
    """True microseconds per nominal microsecond: > 1 means this clock runs slow."""
    period_us: int
    """True microseconds between two ticks of this node."""
    phase_us: int
    """Delay from boot to the first tick, in true microseconds."""
    boot_us: int
    """True time at which this incarnation booted."""

    def local_us(self, true_us: int) -> int:
        """Microseconds elapsed on this node's monotonic clock since it booted."""
        return int((true_us - self.boot_us) / self.rate)

    @staticmethod
    def draw(rng: random.Random, config: ClockConfig, boot_us: int) -> NodeClock:
        drift = config.max_drift
        if rng.random() < config.extreme_fraction:
            rate = 1.0 + drift if rng.random() < 0.5 else 1.0 - drift
        else:
            rate = 1.0 + rng.uniform(-drift, drift)
        period = max(1, round(config.tick_us * rate))
        return NodeClock(
            rate=rate, period_us=period, phase_us=rng.randrange(1, period + 1), boot_us=boot_us
        )
