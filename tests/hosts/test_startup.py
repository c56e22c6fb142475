"""Worker modules load in the worker hosts, never in the control process: a module that
does not import still stops the node at start, with exit 2 and one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from registry.testing.local_cluster import free_ports


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
