"""Clients of the shell simulator: register/unregister through ``Driver.propose``.

Rules (what the ``registrations`` and ``durability`` checkers rely on):

- One op per name at a time; a client retries ``NotLeader`` (nothing was proposed) on the
  hinted leader, up to ``ATTEMPTS`` times.
- An op whose ``propose`` returned OK is acknowledged (``OpAcked``/``Acked``, with the
  entry data the acknowledging node applied at that index). One that raised
  ``ProposalLost``, timed out or lost its node is of unknown outcome (``OpUncertain``).
  An op applied with another result (``ALREADY_EXISTS``…) changed nothing: not reported.
"""

from __future__ import annotations

import asyncio
import random

from registry.core.commands import Command, NameSpec, Register, Unregister
from registry.core.errors import NotLeader, ProposalRejected, RegistryError
from registry.sim.cluster.observations import OpAcked, OpUncertain
from registry.sim.raft.observations import Acked
from registry.sim.shell.cluster import KIND, ShellCluster

__all__ = ["ATTEMPTS", "Workload"]

ATTEMPTS = 20
OP_TIMEOUT_S = 1.5


class Workload:
    def __init__(self, cluster: ShellCluster, rng: random.Random, *, names: int) -> None:
        self.cluster = cluster
        self.rng = rng
        self.names = [f"w{i}" for i in range(names)]
        self.busy: set[str] = set()
        self.writing = True
        self.hint = ""
        self.acked = 0
        self.uncertain = 0

    async def client(self, pause_s: tuple[float, float]) -> None:
        while self.writing:
            await asyncio.sleep(self.rng.uniform(*pause_s))
            free = [n for n in self.names if n not in self.busy]
            if not free or not self.writing:
                continue
            name = self.rng.choice(free)
            self.busy.add(name)
            try:
                if self.rng.random() < 0.6:
                    await self.op(
                        "register", name, Register(specs=(NameSpec(name=name, kind=KIND),))
                    )
                else:
                    await self.op("unregister", name, Unregister(name=name))
            finally:
                self.busy.discard(name)

    def _pick(self) -> str | None:
        live = [n.id for n in self.cluster.live()]
        if self.hint in live:
            return self.hint
        return self.rng.choice(live) if live else None

    async def op(self, kind: str, name: str, command: Command) -> bool:
        """Run one op to an outcome; True if it was acknowledged."""
        cluster = self.cluster
        for _ in range(ATTEMPTS):
            node_id = self._pick()
            driver = cluster.nodes[node_id].driver if node_id else None
            if node_id is None or driver is None:
                await asyncio.sleep(0.1)
                continue
            try:
                index, result = await asyncio.wait_for(driver.propose(command), OP_TIMEOUT_S)
            except NotLeader as exc:
                self.hint = exc.leader
                await asyncio.sleep(self.rng.uniform(0.02, 0.08))
                continue
            except ProposalRejected:
                await asyncio.sleep(0.1)
                continue
            except (RegistryError, TimeoutError):
                self._uncertain(kind, name)
                return False
            self.hint = node_id
            if not result.ok:
                cluster.record("op-refused", node_id, kind, name, result.code.value)
                return False
            now = cluster.now_us()
            data = cluster.nodes[node_id].applied_data.get(index, b"")
            cluster.record("ack", node_id, kind, name, index)
            self.acked += 1
            cluster.observe(Acked(at_us=now, node=node_id, index=index, data=data))
            cluster.observe(OpAcked(at_us=now, node=node_id, op=kind, names=(name,), index=index))
            return True
        return False

    def _uncertain(self, kind: str, name: str) -> None:
        self.uncertain += 1
        self.cluster.record("uncertain", kind, name)
        self.cluster.observe(OpUncertain(at_us=self.cluster.now_us(), op=kind, names=(name,)))
