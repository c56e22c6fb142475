"""Fixtures for storage-fault tests: real node processes on real data directories.

- ``stopped_cluster``: (once per module) a 3-node cluster with small segments and
  frequent snapshots that registered names in two terms (a full restart in between),
  every node applied every write, then stopped gracefully. Tests damage *copies* of a
  node's data directory, never the original.
- ``tmpfs``: fresh small tmpfs mounts (needs root and ``mount``: skipped with the reason
  otherwise, failed under ``CI=true``), always unmounted afterwards.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import PACKAGE_ROOT, RPC_TIMEOUT_S, LocalCluster, wait_for
from tests.system_tools import require_root, require_tool

SMALL_STORAGE: dict[str, object] = {"segment_bytes": 1024, "snapshot_entries": 64}
"""Segments of 1 KiB and a snapshot every ≥ 64 entries: several of each in a few
hundred writes."""


@dataclass(frozen=True)
class Stopped:
    cluster: LocalCluster
    names: tuple[str, ...]
    """Every name acknowledged (all applied on every node before the stop)."""
    term: int
    """The term at the stop (≥ 2: the second batch was written after a restart)."""


def names_on(c: LocalCluster, node: str) -> list[str]:
    reply = c.stub(node).List(pb.ListRequest(limit=100_000), timeout=RPC_TIMEOUT_S)
    assert not reply.truncated
    return [loc.name for loc in reply.locations]


def register(c: LocalCluster, via: str, names: list[str]) -> None:
    for name in names:
        c.stub(via).Register(
            pb.RegisterRequest(spec=pb.NameSpec(name=name, kind="echo")), timeout=5
        )


@pytest.fixture(scope="module")
def stopped_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stopped]:
    c = LocalCluster(tmp_path_factory.mktemp("source"), 3, config=SMALL_STORAGE)
    try:
        c.start(timeout=30)
        first = [f"st/a/{i:03d}" for i in range(90)]
        register(c, "n2", first)
        assert c.terminate_all() == {n: 0 for n in c.ids}
        for node in c.ids:
            c.restart(node)
        c.wait_ready(timeout=30)
        second = [f"st/b/{i:03d}" for i in range(90)]
        register(c, "n3", second)
        expected = sorted(first + second)
        wait_for(
            "every node to apply every write",
            lambda: all(names_on(c, n) == expected for n in c.ids),
            timeout=15,
        )
        term = c.status("n1").term
        assert c.terminate_all() == {n: 0 for n in c.ids}
        yield Stopped(cluster=c, names=tuple(expected), term=term)
    finally:
        c.close()


def run_registry(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``registry ARGS`` in a subprocess (stdout and stderr together)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@contextlib.contextmanager
def tmpfs(points: list[Path], size: str = "8m") -> Iterator[None]:
    """A fresh tmpfs of ``size`` at each of ``points`` (needs root and ``mount``: skipped
    with the reason otherwise, failed under ``CI=true``); always unmounted afterwards."""
    require_root("mounting a tmpfs")
    mount = require_tool("mount", "mount")
    umount = require_tool("umount", "mount")
    mounted: list[Path] = []
    try:
        for point in points:
            point.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], check=True
            )
            mounted.append(point)
        yield
    finally:
        for point in mounted:
            subprocess.run([umount, "-l", str(point)], check=False)
