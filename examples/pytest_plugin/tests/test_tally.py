"""Sample tests of a user's worker: hooks in-process with ``WorkerHarness``, then the
same worker on real nodes with the ``registry_cluster`` fixture (pytest plugin)."""

from __future__ import annotations

import asyncio

from tally_app.workers import Tally

import registry
from registry.testing.local_cluster import LocalCluster
from registry.testing.worker_harness import WorkerHarness
from registry.worker import Resume, StartReason, StopCause


def test_tally_hooks_and_a_handoff_round_trip() -> None:
    async def scenario() -> None:
        async with WorkerHarness(Tally, name="t", args=b"10") as h:
            assert h.ctx.reason is StartReason.NEW
            assert await h.call(b"add 5") == b"15"
            await h.cast(b"add 1")
            answer = await h.handoff(to_node="n2")
            assert answer == Resume(b"16")
            assert (h.ctx.reason, h.ctx.node, h.ctx.token) == (StartReason.HANDOFF, "n2", 2)
            assert await h.call(b"total") == b"16"
        assert h.stops == [StopCause.HANDOFF, StopCause.SHUTDOWN]

    asyncio.run(scenario())


def test_tally_on_a_real_cluster(registry_cluster: LocalCluster) -> None:
    with registry.SyncClient(registry_cluster.seeds) as client:
        client.register("tally-1", kind="tally", args=b"100")
        assert client.call("tally-1", b"add 23", timeout=10) == b"123"
        where = client.whereis("tally-1")
        assert where is not None
        assert client.call("tally-1", b"token", timeout=10) == str(where.token).encode()
