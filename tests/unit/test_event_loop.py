"""The event loop of a node's processes (control and worker hosts): uvloop when installed,
the standard loop when asked for."""

from __future__ import annotations

import asyncio

import pytest

from registry.node.event_loop import EVENT_LOOP_ENV, run_loop


def _loop_module() -> str:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_loop(main())
    return seen[0]


def test_the_node_runs_on_uvloop_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("uvloop", reason="uvloop (the fast extra) is not installed")
    monkeypatch.delenv(EVENT_LOOP_ENV, raising=False)
    assert _loop_module().startswith("uvloop")


def test_registry_event_loop_asyncio_forces_the_standard_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(EVENT_LOOP_ENV, "asyncio")
    assert _loop_module().startswith("asyncio")
