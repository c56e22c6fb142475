"""The replica reconciles only the names an entry touched; rescanning every name on
every Ready must give exactly the same history (same effects, same trace) on the same
seeds, partitions and crashes included."""

from __future__ import annotations

import pytest

from registry.core.replica import Replica
from registry.sim.cluster.runner import run_cluster_seed

SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_incremental_reconcile_matches_a_full_rescan(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental = run_cluster_seed(seed, nodes=5, duration_s=20.0)
    monkeypatch.setattr(Replica, "reconcile_everything", True)
    full = run_cluster_seed(seed, nodes=5, duration_s=20.0)
    assert incremental.ok, incremental.violations
    assert full.ok, full.violations
    assert incremental.starts == full.starts
    assert incremental.handoffs == full.handoffs
    assert incremental.trace_digest == full.trace_digest
