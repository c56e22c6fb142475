"""Fixtures for the power-loss suite: real nodes with their data directories on LazyFS.

Needs root, /dev/fuse, fusermount3 and a LazyFS build. The binary is ``$LAZYFS_BIN``
(``.ci/run`` builds it and sets it), else the build cached in
``${XDG_CACHE_HOME:-/var/cache}/quorum-registry/lazyfs``, built there once (under a file
lock, so xdist workers wait for one build) from the shared tools beside the checkout
(``../shared/tools/lazyfs/build.sh``). Without them every test skips and says why —
unless ``CI=true``, where it fails: CI must run this suite.

``lazy_cluster(size, **config)``: a ``LazyCluster`` under the test's tmp dir, always
closed (nodes stopped, mounts unmounted) after the test; on failure the node and LazyFS
logs are attached to the report.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from registry.testing.lazyfs import missing_requirements
from tests.durability.support import LazyCluster

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO.parent / "shared" / "tools" / "lazyfs" / "build.sh"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or "/var/cache") / "quorum-registry" / "lazyfs"
BUILT = CACHE / "lazyfs" / "build" / "lazyfs"

ClusterFactory = Callable[..., LazyCluster]
RecordProperty = Callable[[str, object], None]
_CLUSTERS = pytest.StashKey[list[LazyCluster]]()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the power-loss suite must run in CI, but it {reason}")
    pytest.skip(f"power-loss suite: {reason}")


def _build() -> Path | None:
    """The cached LazyFS binary, building it first if the shared tools are here."""
    if BUILT.exists() or not BUILD_SCRIPT.exists() or os.geteuid() != 0:
        return BUILT if BUILT.exists() else None
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE.parent / "lazyfs.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another xdist worker may be building it
        if not BUILT.exists():
            done = subprocess.run(
                ["bash", str(BUILD_SCRIPT), str(CACHE)], capture_output=True, text=True
            )
            if done.returncode != 0:
                pytest.fail(f"building LazyFS failed:\n{done.stdout}\n{done.stderr}")
    return BUILT


@pytest.fixture(scope="session")
def lazyfs_binary() -> Path:
    env = os.environ.get("LAZYFS_BIN")
    binary = Path(env) if env else _build()
    if binary is None:
        _unavailable(
            f"needs a LazyFS build: set LAZYFS_BIN, or run as root with {BUILD_SCRIPT} "
            f"present (it builds into {CACHE})"
        )
    problem = missing_requirements(binary)
    if problem is not None:
        _unavailable(problem)
    return binary


@pytest.fixture
def lazy_cluster(
    request: pytest.FixtureRequest, tmp_path: Path, lazyfs_binary: Path
) -> Iterator[ClusterFactory]:
    made: list[LazyCluster] = []
    request.node.stash[_CLUSTERS] = made

    def make(size: int = 3, **config: object) -> LazyCluster:
        # LazyFS reports 0 bytes free (statvfs), which would raise the storage alarm and
        # refuse every write: the free-space reserve is off on these mounts.
        config.setdefault("storage_reserve_bytes", 0)
        c = LazyCluster(
            tmp_path / f"c{len(made)}", size, lazyfs=lazyfs_binary, preset="local", config=config
        )
        made.append(c)
        return c

    try:
        yield make
    finally:
        for c in made:
            c.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for c in item.stash.get(_CLUSTERS, []):
            report.sections.append((f"node logs ({report.when})", c.log_tails()))
    return report


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per power-loss scenario: acknowledged and lost registrations."""
    lines = [
        f"{report.nodeid.rpartition('::')[2]}: {value}"
        for key in ("passed", "failed")
        for report in terminalreporter.stats.get(key, [])
        for name, value in getattr(report, "user_properties", ())
        if name == "power_loss"
    ]
    if lines:
        terminalreporter.write_sep("-", "power loss: acknowledged / lost")
        for line in lines:
            terminalreporter.write_line(line)
