"""Ready loop rule 10: a follower answers its leader's heartbeat before the Ready that
applies and persists what came with it (issue 13: busy applying a failover of 25k
names on a loaded machine, followers answered too late and the leader lost its lease)."""

from __future__ import annotations

import asyncio

from registry.core.commands import NameSpec, Register
from registry.core.messages import Message, MessageType
from registry.core.replica import PeerMessage
from registry.node.ready_loop import ReadyLoop
from tests.unit.replicanet import Cluster

FOLLOWER = "n2"


def _register(name: str) -> Register:
    return Register(specs=(NameSpec(name=name, kind="k"),))


def _held_for_follower(c: Cluster) -> tuple[list[PeerMessage], int, int]:
    """The follower has appended entry ``e1`` (and acked it) but hears nothing after:
    neither that ``e1`` committed nor ``e2``. Returns what the leader sent it meanwhile
    (ending with a heartbeat), ``e1`` and ``e2``."""
    c.tick_until(lambda: len(c.leaders()) == 1)
    assert c.leader().id != FOLLOWER
    follower = c.nodes[FOLLOWER]
    held: list[PeerMessage] = []
    target = {"index": 1 << 62}

    def divert(msg: PeerMessage) -> bool:
        if msg.dst == FOLLOWER and follower.raft.last_index >= target["index"]:
            held.append(msg)
            return False
        return True

    c.filters.append(divert)
    target["index"] = c.leader().raft.last_index + 1
    e1 = c.propose(_register("e1"))
    assert e1 == target["index"]
    e2 = c.propose(_register("e2"))
    assert follower.raft.applied_index < e1, "the follower must not know e1 committed"

    def heartbeat_held() -> bool:
        return any(isinstance(m, Message) and m.type is MessageType.HEARTBEAT for m in held)

    c.tick_until(heartbeat_held)
    c.filters.remove(divert)
    commits = [m.commit for m in held if isinstance(m, Message)]
    assert max(commits) >= e1, "what is held must tell the follower that e1 committed"
    return held, e1, e2


def test_a_follower_answers_a_heartbeat_before_it_applies_and_persists() -> None:
    c = Cluster()
    held, e1, e2 = _held_for_follower(c)
    follower, disk = c.nodes[FOLLOWER], c.disks[FOLLOWER]
    seen: list[tuple[MessageType, bool, int]] = []
    """(type, whether its state machine holds e1, last index on its disk) per Raft
    message sent."""

    def send(msgs: list[PeerMessage]) -> None:
        for m in msgs:
            if isinstance(m, Message):
                has_e1 = follower.state.registered("e1") is not None
                seen.append((m.type, has_e1, disk.raft.last_index))
        if follower.raft.applied_index >= e1:
            loop.stopping = True

    loop: ReadyLoop[PeerMessage] = ReadyLoop(
        follower,
        disk,
        tick=c.timing.tick,
        clock=c.loop.time,
        send=send,
        apply=lambda rd: None,
        advanced=lambda: None,
        feed=follower.step,
        on_turn=lambda: None,
    )

    async def run() -> None:
        inputs: asyncio.Queue[PeerMessage] = asyncio.Queue()
        for msg in held:
            inputs.put_nowait(msg)
        await asyncio.wait_for(loop.run(inputs), 5.0)

    c.loop.run_until_complete(run())
    answers = [s for s in seen if s[0] is MessageType.HEARTBEAT_RESP]
    assert answers, f"no heartbeat answered: {seen}"
    _, applied, on_disk = answers[0]
    assert not applied, f"answered only after applying e1 (index {e1})"
    assert on_disk < e2, f"answered only after persisting up to {on_disk} (e2 = {e2})"
    assert follower.state.registered("e1") is not None, "the Ready after it applies e1"


def test_an_answer_in_a_new_term_waits_for_the_persisted_term() -> None:
    """A heartbeat that raises the follower's term is answered only once the term is on
    disk (a crash must not forget a term it acted in): ``take_early`` holds it back."""
    c = Cluster()
    c.tick_until(lambda: len(c.leaders()) == 1)
    leader = c.leader()
    follower = c.nodes[FOLLOWER]
    term = follower.raft.term
    follower.step(
        Message(
            type=MessageType.HEARTBEAT,
            src=leader.id,
            dst=FOLLOWER,
            term=term + 1,
            commit=0,
            context=1,
        )
    )
    assert follower.raft.term == term + 1
    early = follower.take_early()
    assert not [m for m in early if isinstance(m, Message)], early
    rd = follower.ready()
    answers = [m for m in rd.raft.messages if m.type is MessageType.HEARTBEAT_RESP]
    assert answers and answers[0].term == term + 1
    assert rd.raft.hard_state is not None and rd.raft.hard_state.term == term + 1
