"""What a user gets from the package: ``python -m registry`` and ``registry --version``
work, the license ships, and the pytest plugin is registered."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import registry


def test_python_dash_m_registry_runs_the_command_line() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "registry", "--version"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(f"quorum-registry {registry.__version__} (peer protocol")


def test_the_installed_metadata_names_the_license_and_the_pytest_plugin() -> None:
    meta = metadata.metadata("quorum-registry")
    assert meta["License-Expression"] == "Apache-2.0"
    plugins = metadata.entry_points(group="pytest11")
    assert any(ep.value == "registry.testing.pytest_plugin" for ep in plugins)
