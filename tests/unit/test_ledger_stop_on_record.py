"""The ledger worker's stop is on record before ``on_stop`` returns.

A worker host ends with ``os._exit`` (no flush at exit), and the control process acts on
an activation's end (a handoff's ``Released``, a successor's start) as soon as
``on_stop`` has returned. A stop row still queued then was lost when the host exited, and
the G1 check took the node's exit as that activation's end: a "duplicate" beside a
successor that in fact started after it (ci-run47, ``test_randomized_schedule[5]``, 34
names of a node stopped by a rolling restart mid-handoff).

Real processes: each worker runs in a fresh interpreter that exits with ``os._exit``
right after ``on_stop``, as a host does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from registry.testing import ledger
from registry.testing.jepsen_check import load_activations

WORKER = """
import asyncio, os
from registry.testing.ledger_worker import LedgerWorker
from registry.worker.api import Context, StartReason, StopCause

async def main() -> None:
    for i in range({count}):
        worker = LedgerWorker()
        ctx = Context(name=f"w-{{i}}", node="n1", args=b"", token=i + 1, reason=StartReason.NEW)
        await worker.on_start(ctx, None)
        await worker.begin_handoff()
        await worker.on_stop(StopCause.HANDOFF)

asyncio.run(main())
os._exit(0)  # what a worker host does once its loop has ended
"""

PROCESSES = 6
WORKERS_EACH = 5


def test_every_stop_is_on_record_when_the_process_exits_right_after_on_stop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger.create(path)
    env = {"REGISTRY_LEDGER": str(path), "PYTHONPATH": str(Path(__file__).parents[2])}
    for _ in range(PROCESSES):
        subprocess.run(
            [sys.executable, "-c", WORKER.format(count=WORKERS_EACH)],
            env=env,
            check=True,
            timeout=60,
        )
    acts = [a for history in load_activations(ledger.connect(path)).values() for a in history]
    assert len(acts) == PROCESSES * WORKERS_EACH
    missing = [f"{a.name}#{a.token} (pid {a.pid})" for a in acts if a.stop_t is None]
    assert not missing, f"stops lost at exit: {missing}"
    assert {a.stop_cause for a in acts} == {"handoff"}
