"""A pytest plugin for testing your workers against real registry nodes.

Installed with the package (entry point ``pytest11``: ``registry``), so its fixtures are
there in any project that has ``quorum-registry`` installed:

- ``registry_cluster`` (module scope): a started ``LocalCluster`` of real node processes
  on loopback that load your worker modules; ``registry_cluster.seeds`` are the client
  addresses for ``registry.Client`` / ``registry.SyncClient``. Every node is stopped after
  the module's last test. Names persist between the tests of one module: use distinct
  names per test.
- ``registry_worker_modules`` (module scope): the modules the nodes load. Defaults to the
  ini option ``registry_worker_modules``; override the fixture in a ``conftest.py`` or a
  test module to choose per module.

Rules:

1. Nodes run with pytest's working directory and ``sys.path`` (on their ``PYTHONPATH``),
   so a worker module your tests import (``myapp.workers``) imports on the nodes too.
2. A node that exits while the cluster starts (a typo in a module name, an import error
   in your worker) fails the fixture at once with the node's log, rather than after the
   start-up timeout.
3. Ini options (``pytest.ini`` / ``[tool.pytest.ini_options]``): ``registry_worker_modules``
   (lines), ``registry_cluster_size`` (default 3), ``registry_preset`` (default ``local``).

For hooks alone (start, call, cast, handoff round trip) without processes, see
``registry.testing.worker_harness.WorkerHarness``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.testing.local_cluster import LocalCluster

__all__ = ["registry_cluster", "registry_worker_modules"]

START_TIMEOUT_S = 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "registry_worker_modules",
        "modules the registry_cluster nodes load workers from (one per line)",
        type="linelist",
        default=[],
    )
    parser.addini("registry_cluster_size", "nodes in registry_cluster (default 3)", default="3")
    parser.addini("registry_preset", "timing preset of registry_cluster nodes", default="local")


@pytest.fixture(scope="module")
def registry_worker_modules(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The worker modules the nodes load (ini ``registry_worker_modules``)."""
    modules: list[str] = request.config.getini("registry_worker_modules")
    return tuple(modules)


@pytest.fixture(scope="module")
def registry_cluster(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    registry_worker_modules: tuple[str, ...],
) -> Iterator[LocalCluster]:
    """A started cluster of real nodes running your workers; see the module docstring."""
    config = request.config
    size = int(config.getini("registry_cluster_size"))
    cluster = LocalCluster(
        tmp_path_factory.mktemp("registry"),
        size,
        preset=str(config.getini("registry_preset")),
        worker_modules=registry_worker_modules,
        cwd=Path.cwd(),
        python_path=tuple(p for p in sys.path if p and os.path.isdir(p)),
    )
    try:
        cluster.start(timeout=START_TIMEOUT_S)
        yield cluster
    finally:
        cluster.close()
