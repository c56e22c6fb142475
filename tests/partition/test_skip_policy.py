"""The suite's own rule: skip with a reason outside CI, fail in CI (runs without root)."""

from __future__ import annotations

import os
import shutil

import pytest

from registry.testing import netns
from tests.partition.conftest import require_netns


def test_not_root_skips_with_a_reason_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_netns()


def test_missing_nft_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "nft" else "/bin/x")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="`nft` command is missing"):
        require_netns()
    assert netns.missing_requirements() is not None
