"""Small operator conveniences: ``registry --version``, ``registry node --check`` and
``registry dev --data-dir`` on a directory that does not exist yet."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from registry import __version__
from registry.cli import main
from registry.testing.local_cluster import free_ports, wait_for


def test_version_prints_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"quorum-registry {__version__} (peer protocol 1, accepts 0-1)"
    )


def test_node_check_prints_a_config_that_reads_back_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    peers = "n1=127.0.0.1:7400,n2=127.0.0.1:7401/127.0.0.1:8501,n3=127.0.0.1:7402"
    assert main(["node", "--check", "--id", "n1", "--peers", peers, "--roles", "web"]) == 0
    printed = capsys.readouterr().out
    assert 'roles = ["web"]' in printed and 'n2 = "127.0.0.1:8501"' in printed
    (tmp_path / "node.toml").write_text(printed)
    assert main(["node", "--check", "--config", str(tmp_path / "node.toml")]) == 0
    assert capsys.readouterr().out == printed


def test_node_check_names_the_problem_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["node", "--check", "--id", "n9", "--peers", "n1=127.0.0.1:7400"]) == 2
    assert "not among the bootstrap peers" in capsys.readouterr().err


def test_dev_creates_a_missing_data_dir(tmp_path: Path) -> None:
    root = tmp_path / "does" / "not" / "exist"
    grpc_port, http_port = free_ports(2)
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "registry.cli", "dev", "--nodes", "1"),
            *("--data-dir", str(root), "--base-port", str(grpc_port)),
            *("--http-base-port", str(http_port)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        # Ready means the node started in a data dir under the one we named.
        wait_for("the dev node's data", lambda: (root / "n1").is_dir() or proc.poll(), 30)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert b"Traceback" not in err, err.decode()
    assert (root / "cluster_id").is_file()
