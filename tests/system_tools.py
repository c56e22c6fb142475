"""System tools some tests need (prometheus, promtool, chromium, etcd, mount), and root.

``.ci/run`` installs them, so under ``CI=true`` a missing tool fails the test; elsewhere
the test skips and says what to install."""

from __future__ import annotations

import os
import shutil

import pytest


def require_tool(tool: str, package: str) -> str:
    """The path of ``tool`` (a path or a name on PATH), or skip/fail with the reason."""
    found = tool if os.path.isfile(tool) else shutil.which(tool)
    if found:
        return found
    reason = f"{tool} is not installed (Debian: apt-get install {package})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


def require_root(what: str) -> None:
    """Skip (fail under ``CI=true``, which runs as root) unless running as root."""
    if os.geteuid() == 0:
        return
    reason = f"{what} needs root"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)
