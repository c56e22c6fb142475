"""The bench's parameters: one frozen dataclass, defaults for a full and a quick run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SECTIONS = (
    "memory",
    "registrations",
    "lookups",
    "grpc",
    "failover",
    "rebalance",
    "durable",
    "etcd",
)
"""In the order they run. ``lookups`` covers ``whereis`` and ``call``; ``rebalance``
covers the 4th node joining and the heal after a pause; ``durable`` covers checkpoints
and activation on first call; ``grpc`` and ``etcd`` are the references."""

FULL_NAMES = 100_000
QUICK_NAMES = 10_000
FULL_OPS = 10_000
QUICK_OPS = 2_000
FULL_FAILOVER_RUNS = 10
QUICK_FAILOVER_RUNS = 3
FULL_BUDGET_S = 300.0
QUICK_BUDGET_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Params:
    nodes: int = 3
    """Nodes of the main cluster (the rebalance section adds one more)."""
    names: int = FULL_NAMES
    """Names per registration run, per rebalance and per memory measurement."""
    ops: int = FULL_OPS
    """Operations per latency row (``whereis`` from the cache runs ten times as many)."""
    failover_runs: int = FULL_FAILOVER_RUNS
    preset: str = "lan"
    """Timing preset of every cluster. The failover target (≤ 3 s) is for ``lan``."""
    concurrency: int = 64
    """In-flight operations of the one-by-one and concurrent rows."""
    batch: int = 1000
    """Names per ``register_many`` call."""
    batch_concurrency: int = 4
    """``register_many`` calls in flight."""
    budget_s: float = FULL_BUDGET_S
    """Longest one measured run (a registration run, a latency row) may take, seconds;
    past it no new operation starts and the figure is over what was done."""
    etcd_txn_ops: int = 128
    """Operations per etcd txn in its batched run (etcd's default ``--max-txn-ops``)."""
    sections: tuple[str, ...] = SECTIONS
    work_dir: Path | None = None
    """Where clusters keep data and logs (default: a temporary directory, removed)."""
    keep: bool = False
    """Keep ``work_dir`` (data directories and node logs) after the run."""
    quick: bool = False
    fsync: bool = True
    """fsync the log before acknowledging (the node default). ``False`` (``--no-fsync``)
    runs every cluster, and etcd, without it: not durable, only to show where the time
    goes; the table says so."""

    def validate(self) -> Params:
        problems = []
        if self.nodes < 3:
            problems.append(f"--nodes must be ≥ 3 (got {self.nodes}): failover needs a quorum")
        if self.names < 10:
            problems.append(f"--names must be ≥ 10 (got {self.names})")
        if self.ops < 10:
            problems.append(f"--ops must be ≥ 10 (got {self.ops})")
        if self.budget_s <= 0:
            problems.append(f"--budget must be > 0 s (got {self.budget_s})")
        if self.failover_runs < 1:
            problems.append(f"--failover-runs must be ≥ 1 (got {self.failover_runs})")
        if not 1 <= self.batch <= 10_000:
            problems.append(f"batch must be 1..10000 names (got {self.batch})")
        unknown = sorted(set(self.sections) - set(SECTIONS))
        if unknown:
            problems.append(f"unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def etcd_in_flight(self) -> int:
        """etcd txns in flight in the batched run: as many names in flight as ours."""
        return max(1, self.batch * self.batch_concurrency // self.etcd_txn_ops)
