"""Operator inputs to a ``Replica`` beside ticks, messages and proposals: typed values
the shell hands to ``Replica.control`` (through the driver's input queue, between
Readies), instead of code that runs on the core.

Each input names its result type (``Control[R]``): ``control`` returns an ``R`` or raises
a ``RegistryError`` (``NotLeader``, ``ProposalRejected``, ``ConfChangeInProgress``…) and
then changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from registry.core.commands import Checkpoint, Quit, Remind
from registry.core.messages import ConfChange, NodeId

R = TypeVar("R", covariant=True)


class Control(Generic[R]):
    """Base of the typed inputs; ``R`` is what ``Replica.control`` returns for it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Drain(Control[None]):
    """Start a graceful stop (``Replica.drain``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeDurable(Control[None]):
    """A worker's checkpoint, reminder change or quit: proposed here when leading, else
    forwarded to the leader (``Replica.propose_checkpoint``); its outcome is read from
    the applied state (``registry.node.checkpoints``)."""

    command: Checkpoint | Quit | Remind


@dataclass(frozen=True, slots=True, kw_only=True)
class UseBinaryEntries(Control[None]):
    """Every peer reads binary log entries now: write them (``Replica.binary_entries``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferLeadership(Control[None]):
    """Hand leadership to ``target`` (``RawNode.transfer_leadership``); only a leader."""

    target: NodeId


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfChangeProposed:
    term: int
    """The leader's term when it appended the change: if the entry at ``index`` has
    another term once applied, the change was lost to a leadership change."""
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ProposeConfChange(Control[ConfChangeProposed]):
    """Propose one membership change (``RawNode.propose_conf_change``); only a leader."""

    change: ConfChange


@dataclass(frozen=True, slots=True, kw_only=True)
class StateCapture:
    index: int
    """The applied index the state is at."""
    term: int
    """The log term at ``index`` (0 when compacted away)."""
    names: int
    data: bytes
    """``RegistryState.snapshot()``: the registry state at ``index``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureState(Control[StateCapture]):
    """The applied registry state, consistent with its index (a backup)."""
