"""The membership-change nemesis (issue 17) against 3 nodes in namespaces, with the same
checker as every randomized run.

Each fault adds a node under a new id (a learner in the ``spare`` namespace), promotes it
while a minority of the original voters is cut off, then removes it while another
minority is cut off (its names move away by handoff) and stops it. Asserted: the checker
finds nothing (no duplicate, nothing lost, no stale write accepted, tokens rising,
minority probes refused), every added node really served names while it was a member,
and none holds a name at the end.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from registry.testing.jepsen import JepsenConfig, run
from tests.partition.conftest import require_netns

SEED = 1701
FAULTS = 3


def test_add_promote_and_remove_under_partitions(tmp_path: Path) -> None:
    require_netns()
    seed = int(os.environ.get("PARTITION_SEED", SEED))
    lines: list[str] = []
    outcome = run(
        JepsenConfig(
            nodes=3,
            time_s=600.0,  # bounded by max_faults
            max_faults=FAULTS,
            names=120,
            seed=seed,
            preset="local",
            nemesis=("member-change",),
            root=tmp_path,
            keep=True,
            log=lines.append,
        )
    )
    rep = outcome.report
    replay = "registry jepsen --nodes 3 --names 120 --preset local --nemesis member-change"
    replay += f" --max-faults {FAULTS} --seed {seed}"
    detail = "\n".join([*lines, *rep.examples, f"replay: {replay}", f"files: {tmp_path}"])
    assert not outcome.node_crashes, f"nodes exited on their own: {outcome.node_crashes}\n{detail}"
    assert rep.ok, f"violations:\n{detail}"
    assert (rep.duplicates, rep.stale_writes_accepted, rep.lost_registrations) == (0, 0, 0)
    assert (rep.split_brains, rep.token_regressions) == (0, 0), detail
    assert rep.faults_by_kind.get("member-change") == FAULTS, detail
    # Each change cut a minority twice, and each cut was probed (G6).
    assert rep.faults_by_kind.get("split") == 2 * FAULTS and rep.minority_probes > 0, detail

    conn = sqlite3.connect(tmp_path / "ledger.sqlite")
    try:
        served = dict(
            conn.execute(
                "SELECT node, COUNT(*) FROM activations WHERE node LIKE 'm%' GROUP BY node"
            ).fetchall()
        )
        final = conn.execute("SELECT COUNT(*) FROM final WHERE node LIKE 'm%'").fetchone()[0]
    finally:
        conn.close()
    added = {f"m{i}" for i in range(1, FAULTS + 1)}
    assert set(served) == added, f"added nodes that ran names: {served}\n{detail}"
    assert final == 0, f"{final} names still on a removed node\n{detail}"
