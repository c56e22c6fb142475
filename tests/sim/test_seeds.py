"""Many seeds of the Raft simulation under the nemesis; every checker must stay silent.

Seeds run in chunks of ``CHUNK`` so that ``pytest -n auto`` spreads them over the cores.
``SIM_SEEDS`` (per cluster size, default 250) and ``SIM_DURATION`` (simulated seconds of
nemesis, default 30) scale the run — e.g. a nightly job can set ``SIM_SEEDS=5000``.
A failure lists each failing seed's violations and the command that replays it.
"""

from __future__ import annotations

import os
from functools import partial

import pytest

from registry.sim.raft.runner import SeedResult, run_raft_seed
from registry.sim.runner import run_seeds

SEEDS_PER_SIZE = int(os.environ.get("SIM_SEEDS", "250"))
DURATION_S = float(os.environ.get("SIM_DURATION", "30"))
CHUNK = 10

CASES = [
    pytest.param(nodes, start, id=f"{nodes}nodes-seeds{start}-{start + CHUNK - 1}")
    for nodes in (3, 5)
    for start in range(0, SEEDS_PER_SIZE, CHUNK)
]


def _report(failing: list[SeedResult]) -> str:
    lines = []
    for result in failing:
        lines.append(f"seed {result.seed} ({result.nodes} nodes):")
        lines.extend(f"  {v}" for v in result.violations)
        lines.append(f"  replay: {result.replay_command()}")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize(("nodes", "start"), CASES)
def test_no_violations(nodes: int, start: int) -> None:
    seeds = range(start, min(start + CHUNK, SEEDS_PER_SIZE))
    results = run_seeds(partial(run_raft_seed, nodes=nodes, duration_s=DURATION_S), seeds)
    failing = [r for r in results if r.violations]
    assert not failing, "simulation found violations:\n" + _report(failing)
    for result in results:
        assert result.sim_seconds >= DURATION_S
        assert result.liveness_s is not None
        assert result.elections >= 1
        assert result.acked > 0
    # The harness must keep exercising what it claims to (a silent regression here would
    # make the zero-violation result above meaningless).
    totals = {key: sum(r.stats.get(key, 0) for r in results) for key in results[0].stats}
    assert totals["snapshots_installed"] > 0
    assert totals["reads_served"] > 0
    assert totals["messages_lost"] > 0 and totals["messages_duplicated"] > 0
    if nodes >= 5:
        assert totals["conf_changes"] > 0 and totals["machines_replaced"] > 0
