"""A worker holding its host's GIL, on a node cut off by a partition (G1; needs root).

The ``gilhog`` worker calls C code that holds the GIL for 30 s, so no thread of its host
runs — not the event loop, not the sub-lease reader, not the watchdog. Its node is then
cut off from the others with nftables drops (real network namespaces). Only the control
process can end that host: its member lease lapses at most ``lease`` after the cut, and
it must SIGKILL the host within ``fence_grace`` of that. The majority starts the name
elsewhere after ``down_after``; the ledger must show no write of the old token after that
start — the worker's "after" row, written when its C call returns, must never appear.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from registry.core.timing import preset
from registry.testing.cluster import NetnsCluster, wait_for
from registry.testing.netns import cut, missing_requirements
from tests.hosts.support import DeathWatch, Ledger, ledger

__all__ = ["ledger"]

REPO = Path(__file__).resolve().parents[2]
SLACK_S = 0.5
"""Scheduling slack on a loaded 2-core machine (the control loop polls every 10 ms)."""


def _require_netns() -> None:
    problem = missing_requirements()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"this test must run in CI, but it {problem}")
    pytest.skip(f"worker-host partition test: {problem}")


def test_partitioned_node_kills_a_host_that_holds_the_gil(
    tmp_path: Path, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    _require_netns()
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    timing = preset("local")
    c = NetnsCluster(tmp_path, 3, worker_modules=("registry.examples", "tests.hosts.workers"))
    try:
        c.start(timeout=60.0)
        name = "gil-job"
        c.agent.request(
            "register_many",
            "n1",
            timeout=5.0,
            specs=[{"name": name, "kind": "gilhog", "args": "30"}],
        )
        hogging = wait_for(
            "the worker holding the GIL",
            lambda: (
                ledger.rows("SELECT token, pid FROM rows WHERE name = ? AND what = 'hog'", name)
                or None
            ),
            20.0,
        )
        token, host_pid = (int(str(v)) for v in hogging[0])
        owner = next(
            n
            for n in c.ids
            if host_pid in [h["pid"] for h in json.loads(c.http_get(n, "/status")[1])["hosts"]]
        )
        others = [n for n in c.ids if n != owner]

        death = DeathWatch(host_pid)
        c.net.set_drops(cut([owner], [*others, "client"]))
        t_cut = time.monotonic()  # the cut is in force: no acknowledgement after this

        def moved() -> tuple[int, str, float] | None:
            later = [s for s in ledger.starts(name) if s[0] > token]
            return later[0] if later else None

        new_token, reason, t_new = wait_for(f"{name} to start elsewhere", moved, 20.0)
        bound = timing.lease + timing.fence_grace + SLACK_S
        ended = death.ended(t_cut + bound + 2.0)
        last_old = ledger.last_write(name, token)
        print(
            f"after the cut: host gone {ended - t_cut:.3f} s, last old write "
            f"{last_old - t_cut:.3f} s, successor started {t_new - t_cut:.3f} s"
        )
        assert reason == "failover"
        assert last_old < t_new, (
            f"the old activation (token {token}) wrote {last_old - t_new:.3f} s after the "
            f"new one (token {new_token}) started: two activations at once"
        )
        assert ended - t_cut <= bound, (
            f"the host holding the GIL lived {ended - t_cut:.2f} s after the cut; "
            f"lease + fence_grace is {timing.lease + timing.fence_grace:g} s"
        )
        after = ledger.rows("SELECT t FROM rows WHERE name = ? AND what = 'after'", name)
        assert not after, "the killed host's worker ran on after its C call"
        c.net.heal()
        c.wait_ready(30.0)
    finally:
        c.close()
