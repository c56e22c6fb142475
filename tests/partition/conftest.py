"""Fixtures for the partition suite: real nodes in network namespaces (needs root).

Without root, ``ip`` or ``nft`` every test here skips and says why — unless ``CI=true``,
where it fails instead: CI must run this suite, not skip it.

``scenario3`` / ``scenario5``: a fresh cluster of 3 / 5 nodes (preset ``local``, ledger
workers) wrapped in a ``Scenario``; always torn down (processes, namespaces, bridge) after
the test, and on failure the tail of every node's log is attached to the report. A node
process that exited without the test stopping it fails the test.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.testing.netns import cleanup_leftovers, missing_requirements
from tests.partition.support import Scenario


def require_netns() -> None:
    problem = missing_requirements()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"the partition suite must run in CI, but it {problem}")
    pytest.skip(f"partition suite: {problem}")


@pytest.fixture(scope="session", autouse=True)
def _leftovers() -> None:
    if missing_requirements() is None:
        cleanup_leftovers()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


def _scenario(request: pytest.FixtureRequest, root: Path, size: int) -> Iterator[Scenario]:
    require_netns()
    s = Scenario(root, size)
    try:
        s.start()
        yield s
        request.node.user_properties.append(("faults", s.faults_injected()))
        crashed = s.cluster.crashed()
        assert not crashed, f"node process(es) exited on their own: {crashed}"
    except BaseException:
        request.node.add_report_section("teardown", "node logs", s.cluster.log_tails())
        raise
    finally:
        if request.node.stash.get(_FAILED, False):
            request.node.add_report_section("teardown", "node logs", s.cluster.log_tails())
        s.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say how many faults the partition tests injected in all (≥ 100 is the bar)."""
    seen: dict[str, int] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            for key, value in getattr(report, "user_properties", ()):
                if key == "faults":
                    seen[report.nodeid] = int(value)
    if seen:
        terminalreporter.write_line(
            f"partition suite: {sum(seen.values())} faults injected by {len(seen)} tests"
        )


@pytest.fixture
def scenario3(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scenario]:
    yield from _scenario(request, tmp_path, 3)


@pytest.fixture
def scenario5(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Scenario]:
    yield from _scenario(request, tmp_path, 5)
