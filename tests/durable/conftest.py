"""A fresh 3-node ``local`` cluster with the durable test workers, per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import LocalCluster

WORKER_MODULES = ("tests.durable.workers",)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "cluster", 3, preset="local", worker_modules=WORKER_MODULES)
    try:
        c.start(timeout=30.0)
        yield c
        assert not c.crashed(), f"node process(es) exited on their own\n{c.log_tails()}"
    finally:
        c.close()
