"""Fixtures for real-process cluster tests (the machinery lives in ``harness.py``).

- ``cluster``: a fresh 3-node cluster (preset ``local``) for a test that kills, stops or
  restarts nodes; started before the test, always stopped after it.
- ``calm_cluster``: one 3-node cluster per test session (per xdist worker) for tests that
  leave every node running; each such test uses its own name prefix.

After each test, a node process that ended without the test stopping it fails the test
("no request can crash a node"); on any failure the tail of every node's log is attached
to the report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.cluster.harness import LocalCluster

WORKER_MODULES = ("registry.examples", "tests.cluster.workers")


def _started(root: Path) -> LocalCluster:
    c = LocalCluster(root, 3, preset="local", worker_modules=WORKER_MODULES)
    try:
        c.start(timeout=30.0)
    except BaseException as exc:
        logs = c.log_tails()
        c.close()
        raise AssertionError(f"the cluster did not come up: {exc}\n{logs}") from exc
    return c


def _check_and_close(c: LocalCluster) -> None:
    try:
        crashed = c.crashed()
        assert not crashed, f"node process(es) exited on their own: {crashed}\n{c.log_tails()}"
    finally:
        c.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    c = _started(tmp_path)
    try:
        yield c
    finally:
        _check_and_close(c)


@pytest.fixture(scope="session")
def calm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = _started(tmp_path_factory.mktemp("calm"))
    try:
        yield c
    finally:
        _check_and_close(c)


@pytest.fixture(autouse=True)
def _calm_nodes_stay_up(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "calm_cluster" in request.fixturenames:
        c: LocalCluster = request.getfixturevalue("calm_cluster")
        crashed = c.crashed()
        assert not crashed, f"node process(es) exited on their own: {crashed}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for value in funcargs.values():
            if isinstance(value, LocalCluster):
                report.sections.append((f"node logs ({report.when})", value.log_tails()))
    return report
