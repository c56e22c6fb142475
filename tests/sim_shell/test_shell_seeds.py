"""The production Driver under the shell simulator: many seeds hold every guarantee, a
seed replays exactly, and planted shell bugs (send before persist; a lease that outlasts
``down_after``) are caught.

The 200 seeds run in four chunks so that ``pytest -n auto`` spreads them over the cores.
Two seconds of chaos per seed never let a too-long lease show (a failover needs a
member cut off for ``down_after``, 1.86 s, while it still runs its names), so a few
seeds also run 20 s of chaos.
"""

from __future__ import annotations

import pytest

from registry.sim.shell.plants import LeasePastDownAfter, SendBeforePersist
from registry.sim.shell.runner import ShellConfig, run_seed, run_seeds

SEEDS = 200
CHUNKS = 4
CI = ShellConfig()
"""Two simulated seconds of faults per seed: 200 seeds stay well under a minute."""

LONG = ShellConfig(chaos_s=20.0)
"""Twenty simulated seconds of faults: long enough for failovers of cut-off members."""
LONG_SEEDS = 12
LEASE_PLANT_SEEDS = 40

SAFETY = ("[election-safety]", "[state-machine-safety]", "[durability]", "[registrations]")


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_seeds_hold_every_guarantee(chunk: int) -> None:
    size = SEEDS // CHUNKS
    seeds = range(1 + chunk * size, 1 + (chunk + 1) * size)
    results, _wall = run_seeds(seeds, CI)
    failing = {r.seed: r.violations for r in results if r.violations}
    assert failing == {}
    # The seeds did exercise the shell: writes were acknowledged and nodes crashed.
    assert sum(r.acked for r in results) > 10 * len(results)
    assert sum(r.crashes for r in results) > len(results)


def test_same_seed_same_trace() -> None:
    first, again, other = run_seed(7, CI), run_seed(7, CI), run_seed(8, CI)
    assert first.trace_hash == again.trace_hash
    assert (first.events, first.acked, first.virtual_s) == (
        again.events,
        again.acked,
        again.virtual_s,
    )
    assert other.trace_hash != first.trace_hash


def test_send_before_persist_is_caught() -> None:
    """Acknowledging a vote or an append before its fsync loses what the others counted
    on when the node crashes inside the fsync: a safety checker must say so."""
    for seed in range(1, SEEDS + 1):
        result = run_seed(seed, CI, plant=SendBeforePersist)
        caught = [v for v in result.violations if any(tag in v for tag in SAFETY)]
        if caught:
            break
    else:
        pytest.fail(f"send-before-persist went unnoticed in {SEEDS} seeds")
    # The same seed with the production Ready loop holds.
    assert run_seed(seed, CI).violations == ()


def test_long_chaos_seeds_hold_every_guarantee() -> None:
    results, _wall = run_seeds(range(1, LONG_SEEDS + 1), LONG)
    failing = {r.seed: r.violations for r in results if r.violations}
    assert failing == {}
    assert sum(r.crashes for r in results) > 10 * len(results)


def test_lease_past_down_after_is_caught() -> None:
    """A renewal that grants more than the acknowledgement did lets a member cut off
    from the leader keep running its names after the leader failed them over: the
    single-activation checker must say so."""
    for seed in range(1, LEASE_PLANT_SEEDS + 1):
        result = run_seed(seed, LONG, plant=LeasePastDownAfter)
        caught = [v for v in result.violations if "[single-activation]" in v]
        if caught:
            break
    else:
        pytest.fail(f"a lease past down_after went unnoticed in {LEASE_PLANT_SEEDS} seeds")
    assert run_seed(seed, LONG).violations == ()
