"""One seed, one run: the same seed replays exactly, even in another process with another
string-hash seed (``PYTHONHASHSEED``), and different seeds differ."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from registry.sim.raft.runner import run_raft_seed

ROOT = Path(__file__).resolve().parents[2]


def _fingerprint(seed: int, nodes: int) -> tuple[object, ...]:
    r = run_raft_seed(seed, nodes=nodes, duration_s=8.0)
    return (r.trace_digest, r.violations, r.elections, r.commits, r.acked, r.events, r.stats)


def test_same_seed_same_trace() -> None:
    assert _fingerprint(7, 5) == _fingerprint(7, 5)


def test_different_seeds_differ() -> None:
    digests = {run_raft_seed(seed, nodes=3, duration_s=5.0).trace_digest for seed in range(4)}
    assert len(digests) == 4


def test_same_trace_under_another_hash_seed() -> None:
    """Iterating a set of strings in hash order would make runs differ between processes."""
    code = (
        "from registry.sim.raft.runner import run_raft_seed;"
        "print(run_raft_seed(11, nodes=5, duration_s=8.0).trace_digest)"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed, PYTHONPATH=str(ROOT))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, check=True
        )
        digests.add(out.stdout.decode().strip())
    digests.add(run_raft_seed(11, nodes=5, duration_s=8.0).trace_digest)
    assert len(digests) == 1
