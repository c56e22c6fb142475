"""``List`` over many names lets the node's event loop run while it builds the answer:
built in one go, 100k locations held a leader's loop ~0.5 s, long enough to lose its
leadership (issue 13's 100k bench)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from registry.core.commands import MemberUp, NameSpec, Register
from registry.core.state import RegistryState
from registry.node.config import NodeConfig
from registry.node.directory import Directory
from registry.node.service import LIST_YIELD_EVERY, RegistryService
from registry.v1 import registry_pb2 as pb

NAMES = 5 * LIST_YIELD_EVERY


def service_over(state: RegistryState) -> RegistryService:
    """A service whose replica is ``state`` alone: ``List`` reads nothing else."""
    replicated = SimpleNamespace(view=SimpleNamespace(state=state))
    directory = Directory(lambda: state, lease_holds=lambda: True, me="n1")
    unused = cast(Any, None)
    return RegistryService(
        NodeConfig(id="n1"),
        cast(Any, replicated),
        directory,
        health=unused,
        workers=unused,
        disk=unused,
        watches=unused,
        client_tls=None,
    )


def test_a_list_of_many_names_lets_the_loop_run_while_it_is_built() -> None:
    state = RegistryState()
    specs = tuple(NameSpec(name=f"big/{i:05}", kind="k") for i in range(NAMES))
    assert state.apply(1, MemberUp(node="n1", incarnation=1)).ok
    assert state.apply(2, Register(specs=specs)).ok
    service = service_over(state)

    async def scenario() -> tuple[pb.ListResponse, int]:
        turns = 0
        listing = asyncio.ensure_future(
            service.List(pb.ListRequest(prefix="big/", limit=NAMES), None)
        )

        async def count_turns() -> None:
            nonlocal turns
            while not listing.done():
                turns += 1
                await asyncio.sleep(0)

        await asyncio.gather(listing, count_turns())
        return listing.result(), turns

    reply, turns = asyncio.run(scenario())
    assert [loc.name for loc in reply.locations] == [s.name for s in specs], "nothing lost"
    assert not reply.truncated
    assert turns >= NAMES // LIST_YIELD_EVERY, f"the loop ran {turns} times meanwhile"
