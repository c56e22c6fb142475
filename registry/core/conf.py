"""Membership configurations: single-server changes, as pure functions over the log.

A configuration is the snapshot's plus every CONF_CHANGE entry after it, committed or not
(Raft thesis §4.1: a server uses the latest configuration in its log). One change at a
time — add a voter, add a learner, promote a learner, remove a member — keeps any two
consecutive configurations' majorities overlapping.
"""

from __future__ import annotations

from collections.abc import Iterable

from registry.core.errors import ProposalRejected
from registry.core.messages import ConfChange, ConfChangeType, ConfState, Entry, EntryType


def apply_conf_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after ``change``. Invalid changes are refused on proposal."""
    voters, learners = set(conf.voters), set(conf.learners)
    if change.type is ConfChangeType.ADD_VOTER:
        learners.discard(change.node)
        voters.add(change.node)
    elif change.type is ConfChangeType.ADD_LEARNER:
        if change.node not in voters:
            learners.add(change.node)
    else:
        voters.discard(change.node)
        learners.discard(change.node)
    return ConfState(voters=frozenset(voters), learners=frozenset(learners))


def validate_conf_change(conf: ConfState, change: ConfChange) -> None:
    """Refuse, with a reason, a change that would do nothing or leave no voter."""
    node = change.node
    if not node:
        raise ProposalRejected("membership change names no node")
    if change.type is ConfChangeType.ADD_VOTER and node in conf.voters:
        raise ProposalRejected(f"{node} is already a voter")
    if change.type is ConfChangeType.ADD_LEARNER and node in conf.members():
        role = "voter" if node in conf.voters else "learner"
        raise ProposalRejected(f"{node} is already a {role}; demotion is not supported")
    if change.type is ConfChangeType.REMOVE:
        if node not in conf.members():
            raise ProposalRejected(f"{node} is not a member")
        if conf.voters == {node}:
            raise ProposalRejected(f"cannot remove {node}: it is the last voter")


def conf_in_log(
    base: ConfState, base_index: int, entries: Iterable[Entry], upto: int | None = None
) -> tuple[ConfState, int]:
    """The configuration after ``entries`` (those up to ``upto``), starting from ``base``
    at ``base_index``; also the index of the last change (``base_index`` if none)."""
    conf, last = base, base_index
    for entry in entries:
        if upto is not None and entry.index > upto:
            break
        if entry.type is EntryType.CONF_CHANGE:
            conf = apply_conf_change(conf, ConfChange.decode(entry.data))
            last = entry.index
    return conf, last
