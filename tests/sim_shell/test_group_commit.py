"""Rule 5 of the Ready loop (group commit), in virtual time: a lone proposal waits
``GROUP_COMMIT_S``; proposals that arrive concurrently are gathered for the whole
``GROUP_COMMIT_WINDOW_S``, so they go out in one Ready (one persist, one append)."""

from __future__ import annotations

import asyncio

import pytest

from registry.core.timing import Timing
from registry.node.ready_loop import GROUP_COMMIT_S, GROUP_COMMIT_WINDOW_S, ReadyLoop
from registry.sim.shell.disk import SimDisk
from registry.sim.shell.vloop import VirtualLoop
from tests.sim_shell.one_node import one_node_replica


def _loop(fed: list[str]) -> ReadyLoop[str]:
    timing = Timing().validate()
    replica = one_node_replica(timing)
    return ReadyLoop(
        replica,
        SimDisk(),
        tick=0.05,
        clock=asyncio.get_running_loop().time,
        send=lambda msgs: None,
        apply=lambda ready: None,
        advanced=lambda: None,
        feed=fed.append,
        on_turn=lambda: None,
        gathers=lambda item: item.startswith("propose"),
    )


def _gather(arrivals: list[tuple[float, str]]) -> tuple[float, list[str], list[str]]:
    """Run ``gather`` after a first proposal; ``arrivals``: (seconds, input) put on the
    queue meanwhile. How long it waited, what it fed, what it left queued."""
    vloop = VirtualLoop()

    async def main() -> tuple[float, list[str], list[str]]:
        fed: list[str] = []
        ready_loop = _loop(fed)
        inputs: asyncio.Queue[str] = asyncio.Queue()
        for at, item in arrivals:
            vloop.call_later(at, inputs.put_nowait, item)
        start = vloop.time()
        await ready_loop.gather(inputs)
        waited = vloop.time() - start
        left = [inputs.get_nowait() for _ in range(inputs.qsize())]
        return waited, fed, left

    try:
        return vloop.run_until_complete(main())
    finally:
        vloop.close()


def test_a_lone_proposal_waits_only_the_short_wait() -> None:
    waited, fed, left = _gather([(0.0005, "heartbeat"), (0.02, "propose later")])
    assert waited == pytest.approx(GROUP_COMMIT_S, abs=1e-5)
    assert fed == ["heartbeat"]  # not a proposal: no reason to wait on
    assert left == []


def test_concurrent_proposals_are_gathered_for_the_window() -> None:
    arrivals = [(0.0005, "propose b"), (0.004, "propose c"), (0.0075, "propose d")]
    waited, fed, left = _gather([*arrivals, (0.02, "propose later")])
    assert waited == pytest.approx(GROUP_COMMIT_WINDOW_S, abs=1e-5)
    # b was fed after the short wait; c and d are queued for the same Ready (``run``
    # feeds every queued input before it drains); the later one is not there yet.
    assert fed == ["propose b"]
    assert left == ["propose c", "propose d"]
