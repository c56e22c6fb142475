"""The storage alarm: a node whose disk is nearly full stops taking client writes.

Rules (etcd's NOSPACE alarm, per node):

1. Free space of the data directory's file system (``statvfs``: blocks available to
   this user) is checked every ``CHECK_INTERVAL_S`` and before every client write.
   Below ``storage_reserve_bytes`` the alarm is on; at or above, it is off again (freeing
   space clears it, no restart).
2. While it is on, client writes on this node (register, unregister, join, leave) are
   refused with RESOURCE_EXHAUSTED, a message naming the node, the directory, the free
   space and the reserve, and the machine-readable reason ``NOSPACE`` (``ErrorInfo`` status
   details, ``registry.node.status``). Reads, calls, ``/status`` and ``/metrics`` keep working.
3. A leader with the alarm hands leadership to the most caught-up other voter (and again
   at each check while it is still leader), so that the cluster's writes go through a
   node with room for them. The reserve is the room the node keeps meanwhile for what it
   must still write: replicated entries, its hard state, compaction.
4. If the disk fills anyway, the failed write is not retried: the node exits
   (``registry.node.fail_stop``, code 74).

The alarm shows in ``/status`` (``alarms``), the status page and
``registry_storage_alarm{kind="nospace"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

import grpc

from registry.core.controls import TransferLeadership
from registry.node.config import NodeConfig
from registry.node.seams import Replicated
from registry.node.status import Abort

__all__ = ["CHECK_INTERVAL_S", "NOSPACE", "SHED_RETRY_S", "DiskAlarm"]

log = logging.getLogger("registry.node")
CHECK_INTERVAL_S = 0.5
"""Seconds between free-space checks (a statvfs costs microseconds)."""
SHED_RETRY_S = 2.0
"""Seconds before a leader with the alarm asks again to hand leadership over."""
NOSPACE = "NOSPACE"
"""The machine-readable reason of a write refused for lack of disk space."""
_MIB = 1 << 20


class DiskAlarm:
    def __init__(self, cfg: NodeConfig, replicated: Replicated) -> None:
        self._id = cfg.id
        self._replicated = replicated
        self._dir = cfg.data_dir
        self._reserve = cfg.storage_reserve_bytes
        self.free_bytes = -1
        """Free bytes at the last check (-1: not checked yet, or statvfs failed)."""
        self._since: float | None = None
        """Wall-clock time the alarm went on (None: off)."""
        self._task: asyncio.Task[None] | None = None
        self._shed_at = 0.0

    @property
    def active(self) -> bool:
        return self._since is not None

    def message(self) -> str:
        return (
            f"disk full on {self._id} ({self._dir}: "
            f"{self.free_bytes / _MIB:.1f} MiB free, reserve {self._reserve / _MIB:.1f} MiB): "
            "writes refused until space is freed"
        )

    def check(self) -> bool:
        """Measure the free space now; True while the alarm is on."""
        try:
            st = os.statvfs(self._dir)
        except OSError as exc:  # the directory vanished or the fs is gone: say so once
            if self.free_bytes != -1:
                log.warning("storage alarm: cannot statvfs %s: %s", self._dir, exc)
            self.free_bytes = -1
            return self.active
        self.free_bytes = st.f_bavail * st.f_frsize
        low = self.free_bytes < self._reserve
        if low and self._since is None:
            self._since = time.time()
            log.warning("storage alarm: %s", self.message())
        elif not low and self._since is not None:
            self._since = None
            log.warning(
                "storage alarm cleared on %s: %.1f MiB free, writes accepted again",
                self._id,
                self.free_bytes / _MIB,
            )
        return low

    def refuse_writes(self) -> None:
        """Raise the RESOURCE_EXHAUSTED Abort while the alarm is on (rule 2)."""
        if self.check():
            raise Abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self.message(), reason=NOSPACE)

    def alarms(self) -> list[dict[str, object]]:
        """The ``alarms`` list of ``/status``."""
        if self._since is None:
            return []
        return [
            {
                "kind": "nospace",
                "message": self.message(),
                "since": round(self._since, 3),
                "free_bytes": self.free_bytes,
                "reserve_bytes": self._reserve,
            }
        ]

    # -- the timer ---------------------------------------------------------------------

    def start(self) -> None:
        self.check()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="storage-alarm")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            if self.check():
                self._shed_leadership()

    def _shed_leadership(self) -> None:
        view = self._replicated.view
        if not view.is_leader:
            return
        if time.monotonic() - self._shed_at < SHED_RETRY_S:
            return  # a transfer asked for is still under way
        target = view.transfer_target()
        if not target:
            return  # no other voter is up: stay, and refuse client writes
        self._shed_at = time.monotonic()
        log.warning("storage alarm: handing leadership to %s", target)
        self._replicated.submit(TransferLeadership(target=target))
