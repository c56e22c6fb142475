"""The user-facing test kit, used as a user would: ``examples/pytest_plugin`` is a small
project (its own ``pytest.ini``, a ``tally_app`` package importable only from its own
directory) whose sample test unit-tests the worker with ``WorkerHarness`` and runs it on
real nodes through the ``registry_cluster`` fixture, which pytest finds through the
``pytest11`` entry point."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from registry.testing.pytest_plugin import START_TIMEOUT_S

PROJECT = Path(__file__).resolve().parents[2] / "examples" / "pytest_plugin"


def _pytest(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run, time.monotonic() - started


def test_the_sample_project_passes_with_its_workers_importable_on_the_nodes() -> None:
    run, _ = _pytest()
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout


def test_a_node_that_cannot_start_fails_the_fixture_at_once_with_its_log() -> None:
    run, elapsed = _pytest("-o", "registry_worker_modules=tally_app.missing", "-k", "real")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "NodeExited" in run.stdout and "exited with code 2" in run.stdout
    assert "No module named 'tally_app.missing'" in run.stdout  # the node's own log line
    assert elapsed < START_TIMEOUT_S / 2, f"took {elapsed:.1f} s: it waited for the timeout"
