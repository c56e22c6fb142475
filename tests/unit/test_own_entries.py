"""A leader applies the commands it proposed without decoding their entries again (it
had just encoded them), and ends up in exactly the state its followers decode to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import registry.core.replica as replica_module
from registry.core.commands import Command, NameSpec, Register, decode, encode
from tests.unit.test_replica import formed


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """Every entry a replica decodes, in order (all replicas share the module)."""
    seen: list[bytes] = []

    def counting(data: bytes) -> Command:
        seen.append(data)
        return decode(data)

    monkeypatch.setattr(replica_module, "decode", counting)
    yield seen


def test_the_leader_applies_its_own_command_without_decoding_it(decoded: list[bytes]) -> None:
    cluster = formed()
    leader = cluster.leader()
    specs = tuple(NameSpec(name=f"own/{i}", kind="k") for i in range(50))
    decoded.clear()
    command = Register(specs=specs)
    index = cluster.propose(command)
    cluster.tick_until(lambda: all(r.raft.applied_index >= index for r in cluster.nodes.values()))
    data = encode(command, binary=leader.binary_entries)
    assert decoded.count(data) == len(cluster.nodes) - 1, "only the followers decode it"
    states = {n: r.state.snapshot() for n, r in cluster.nodes.items()}
    assert len(set(states.values())) == 1, "the leader's state is its followers' state"
    assert leader.state.registered("own/49") is not None
    assert not leader._own_entries, "nothing is kept once applied"


def test_an_entry_that_another_leader_wrote_over_is_decoded_not_taken_from_memory() -> None:
    """The old leader proposed at indexes that a new leader then filled with other
    entries: it must apply what was committed there, not what it remembers proposing."""
    cluster = formed()
    old = cluster.leader()
    old_id = old.id
    cluster.isolate(old_id)
    for batch in ("lost-a", "lost-b"):
        old.propose(Register(specs=(NameSpec(name=batch, kind="k"),)))
    cluster.pump()
    cluster.tick_until(lambda: any(n != old_id for n in cluster.leaders()))
    new = cluster.nodes[next(n for n in cluster.leaders() if n != old_id)]
    index = new.propose(Register(specs=(NameSpec(name="kept", kind="k"),)))
    cluster.pump()
    cluster.heal()
    cluster.tick_until(lambda: all(r.raft.applied_index >= index for r in cluster.nodes.values()))
    assert old.state.registered("kept") is not None
    assert old.state.registered("lost-a") is None and old.state.registered("lost-b") is None
    states = {n: r.state.snapshot() for n, r in cluster.nodes.items()}
    assert len(set(states.values())) == 1, "every replica applied the same log"
