"""``registry node`` logs name the node on every line, as text or as JSON lines (a real
node process, started and stopped)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from registry.testing.local_cluster import free_ports, wait_for


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_log_line_names_the_node(tmp_path: Path, fmt: str) -> None:
    port, http = free_ports(2)
    log = tmp_path / "node.log"
    argv = [
        sys.executable, "-m", "registry.cli", "node", "--id", "solo",
        "--listen", f"127.0.0.1:{port}", "--http", f"127.0.0.1:{http}",
        "--peers", f"solo=127.0.0.1:{port}", "--data-dir", str(tmp_path / "data"),
        "--preset", "local", "--log-format", fmt, "--log-level", "debug",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        # Ready (it holds its lease) comes after the signal handlers are installed, so the
        # SIGTERM below is a graceful stop, not the default kill.
        wait_for("the node to be ready", lambda: _ready(http), 30.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0
    lines = log.read_text().splitlines()
    assert (
        len({line.split()[3] if fmt == "text" else json.loads(line)["logger"] for line in lines})
        >= 2
    ), lines  # several loggers
    for line in lines:
        if fmt == "json":
            record = json.loads(line)
            assert record["node"] == "solo" and record["time"].endswith("Z"), line
            assert set(record) >= {"level", "logger", "message"}
        else:
            assert line.split()[2] == "solo", line


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
            return bool(reply.status == 200)
    except urllib.error.HTTPError:
        return False
