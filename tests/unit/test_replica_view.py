"""The shell's read surface and change feed of a ``Replica``: ``view()`` reports what the
core holds, and each Ready's ``changed`` names exactly what its applied entries
registered, unregistered or moved (what watchers are told), each once per Ready; typed
controls return their results or refuse without changing anything.

A one-node replica driven by hand: ready → (nothing to persist or send) → advance, with
every stop reported at once, as the node's runtime does."""

from __future__ import annotations

import random

import pytest

from registry.core.commands import Command, NameSpec, Register, Unregister
from registry.core.controls import CaptureState, Drain, ProposeConfChange, TransferLeadership
from registry.core.errors import ProposalRejected
from registry.core.messages import ConfChange, ConfChangeType, Role
from registry.core.replica import Replica, ReplicaReady, Stop
from registry.core.state import RegistryState
from registry.core.timing import Timing


class _OneNode:
    def __init__(self) -> None:
        timing = Timing().validate()
        self.replica = Replica(
            timing.raft("n1", voters=frozenset({"n1"})),
            timing.membership(),
            random.Random(3),
            incarnation=1,
            address="n1:7000",
        )
        self.readies: list[ReplicaReady] = []
        for _ in range(200):
            if self.replica.view().is_leader and self.replica.view().state.up_members():
                break
            self.tick()
        assert self.replica.view().state.up_members(), "the node joined its own view"

    def drain(self) -> None:
        replica = self.replica
        while replica.has_ready():
            ready = replica.ready()
            self.readies.append(ready)
            replica.advance(ready)
            for effect in ready.effects:
                if isinstance(effect, Stop):
                    replica.stopped(effect.name, effect.token)

    def tick(self) -> None:
        self.replica.tick()
        self.drain()

    def apply(self, command: Command) -> set[str]:
        """Propose ``command``; the names the Readies until it applied report changed."""
        index = self.replica.propose(command)
        since = len(self.readies)
        self.drain()
        assert self.replica.view().applied_index >= index
        changed: list[str] = []
        for ready in self.readies[since:]:
            assert list(ready.changed) == sorted(set(ready.changed)), "sorted, once each"
            assert not ready.state_reset, "no snapshot was installed"
            changed += ready.changed
        return set(changed)


def test_the_view_reports_the_core() -> None:
    node = _OneNode()
    view = node.replica.view()
    raft = node.replica.raft
    assert (view.id, view.role, view.term, view.leader) == ("n1", Role.LEADER, raft.term, "n1")
    assert (view.commit_index, view.applied_index) == (raft.commit_index, raft.applied_index)
    assert view.conf.voters == frozenset({"n1"}) and view.incarnation == 1
    assert view.term_at(view.commit_index) == raft.term
    assert view.state.members["n1"].address == "n1:7000"


def test_changed_names_are_those_each_ready_applied() -> None:
    node = _OneNode()
    names = [f"w{i}" for i in range(5)]
    assert node.apply(Register(specs=tuple(NameSpec(name=n, kind="k") for n in names))) == set(
        names
    )
    view = node.replica.view()
    assert all(view.state.registered(n) is not None for n in names)
    assert node.apply(Unregister(name="w2")) == {"w2"}
    assert node.replica.view().state.registered("w2") is None
    assert node.apply(Register(specs=(NameSpec(name="w0", kind="k"),))) == set(), (
        "registering a name again changes nothing"
    )


def test_typed_controls_return_their_results_or_refuse() -> None:
    node = _OneNode()
    node.apply(Register(specs=(NameSpec(name="kept", kind="k"),)))
    replica = node.replica
    captured = replica.control(CaptureState())
    assert captured.index == replica.view().applied_index
    assert captured.term == replica.view().term and captured.names == 1
    assert sorted(RegistryState.restore(captured.data).names) == ["kept"]
    proposed = replica.control(
        ProposeConfChange(change=ConfChange(type=ConfChangeType.ADD_LEARNER, node="n2"))
    )
    assert (proposed.term, proposed.index) == (replica.view().term, replica.view().last_index)
    node.drain()
    assert replica.view().conf.learners == frozenset({"n2"})
    with pytest.raises(ProposalRejected, match="not a voter"):
        replica.control(TransferLeadership(target="n2"))
    assert replica.view().is_leader, "a refused transfer changes nothing"
    replica.control(Drain())
    for _ in range(100):  # the next member heartbeat carries it into the log
        if replica.view().state.members["n1"].draining:
            break
        node.tick()
    assert replica.view().state.members["n1"].draining
