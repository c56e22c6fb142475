"""Worker modules load in the worker hosts, never in the control process: a module that
does not import still stops the node at start, with exit 2 and one clear line. Hosts run
on the node's event loop: uvloop when installed, unless ``REGISTRY_EVENT_LOOP=asyncio``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from registry.node.event_loop import EVENT_LOOP_ENV
from registry.testing.local_cluster import free_ports
from tests.hosts.support import host_pids, local_cluster


def test_a_worker_module_that_does_not_import_is_a_config_error(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    node = ["--id", "n1", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path / "n1")]
    bad = ["--worker-module", "no_such_module_xyz", "--workers", "2"]
    result = subprocess.run(
        [sys.executable, "-m", "registry.cli", "node", *node, *bad],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: cannot import worker module 'no_such_module_xyz': "
        "No module named 'no_such_module_xyz'"
    ]


@pytest.mark.parametrize("forced", ["", "asyncio"])
def test_worker_hosts_run_on_the_node_s_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, forced: str
) -> None:
    pytest.importorskip("uvloop", reason="uvloop (the fast extra) is not installed")
    monkeypatch.setenv(EVENT_LOOP_ENV, forced)  # node processes and their hosts inherit it
    with local_cluster(tmp_path, workers=1) as c:
        pids = [pid for node in c.ids for pid in host_pids(c, node)]
        assert len(pids) == 3, pids
        for pid in pids:
            on_uvloop = "uvloop" in Path(f"/proc/{pid}/maps").read_text(encoding="utf-8")
            assert on_uvloop == (forced != "asyncio"), (pid, forced)
