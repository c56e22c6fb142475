"""Clusters whose nodes each read ``REGISTRY_FAULT_SLOW_PERSIST`` from their own trigger
file (``registry.node.faults``), and names placed on a chosen node. Shared by the tests
of a holder that lags (tests/cluster) and of a node whose disk stalls (tests/storage)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from uhashring import HashRing

from registry.core.placement import DEFAULT_VNODES
from registry.node.faults import SLOW_PERSIST_ENV
from tests.cluster.conftest import WORKER_MODULES
from tests.cluster.harness import LocalCluster


class SlowDiskCluster:
    """A started 3-node cluster; ``stall(node)`` makes that node's persists slow."""

    def __init__(
        self, root: Path, monkeypatch: pytest.MonkeyPatch, *, preset: str, delay_s: float
    ) -> None:
        self.cluster = c = LocalCluster(root, 3, preset=preset, worker_modules=WORKER_MODULES)
        self.triggers = {n: root / f"{n}.slow" for n in c.ids}
        try:
            for node, trigger in self.triggers.items():
                monkeypatch.setenv(SLOW_PERSIST_ENV, f"{trigger}:{delay_s}")  # read at start
                c.start_node(node)
        except BaseException:
            c.close()
            raise
        finally:
            monkeypatch.delenv(SLOW_PERSIST_ENV, raising=False)

    def stall(self, node: str) -> None:
        self.triggers[node].touch()

    def unstall(self, node: str) -> None:
        self.triggers[node].unlink(missing_ok=True)


def names_owned_by(node: str, ids: list[str], prefix: str) -> Iterator[str]:
    """Names whose ring owner (all nodes up, no roles) is ``node``."""
    ring = HashRing(nodes=sorted(ids), hash_fn="ketama", vnodes=DEFAULT_VNODES)
    return (n for i in range(100_000) if ring.get_node(n := f"{prefix}{i}") == node)
