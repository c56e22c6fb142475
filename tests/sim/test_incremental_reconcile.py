"""The replica reconciles only the names an entry touched; rescanning every name on
every Ready (``MembershipConfig.reconcile_everything``) must give exactly the same
history (same effects, same trace) on the same seeds, partitions and crashes included."""

from __future__ import annotations

from dataclasses import replace

import pytest

from registry.core.timing import PRESETS
from registry.sim.cluster.runner import run_cluster_seed

SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_incremental_reconcile_matches_a_full_rescan(seed: int) -> None:
    incremental = run_cluster_seed(seed, nodes=5, duration_s=20.0)
    # The simulator's member timing (the ``lan`` preset), with only the rescan switched
    # on: a different timing would change the trace and fail the comparison, not pass it.
    membership = replace(PRESETS["lan"].membership(), reconcile_everything=True)
    full = run_cluster_seed(seed, nodes=5, duration_s=20.0, membership=membership)
    assert incremental.ok, incremental.violations
    assert full.ok, full.violations
    assert incremental.starts == full.starts
    assert incremental.handoffs == full.handoffs
    assert incremental.trace_digest == full.trace_digest
