"""The registry commands: what goes into the Raft log (the values; encodings live in
``registry.core.commands`` and ``registry.core.command_binary``)."""

from __future__ import annotations

from dataclasses import dataclass

from registry.core.errors import RegistryError
from registry.core.messages import NodeId

Priority = tuple[tuple[NodeId, ...], ...]
"""A dist_ac-style priority list: ``(("a",), ("b", "c"))`` means a first, then b or c."""


class InvalidCommand(RegistryError, ValueError):
    """A log entry that does not decode to a registry command."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NameSpec:
    name: str
    kind: str
    args: bytes = b""
    roles: tuple[str, ...] = ()
    """The host must have every one of these roles."""
    priority: Priority | None = None
    """Place by priority list instead of the hash ring."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Register:
    specs: tuple[NameSpec, ...]
    """One or many names in one log entry (register-many). All or nothing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregister:
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Join:
    group: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave:
    group: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberUp:
    node: NodeId
    incarnation: int
    address: str = ""
    roles: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    """Worker kinds this member can run (empty: any)."""
    draining: bool = False
    """The member is shutting down: give it nothing new, move its names away by handoff."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberDown:
    node: NodeId
    incarnation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Released:
    """The holder of ``name`` stopped the activation ``token`` for a handoff."""

    name: str
    token: int
    state: bytes | None = None
    """Handed to the next activation; ``None`` restarts it fresh."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Releases:
    """Several ``Released`` in one entry: a rebalance hands off thousands of names at
    once, and one entry (and one forwarded message) per name bounded how fast."""

    items: tuple[Released, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberAdmit:
    """An operator added ``node`` at runtime (``MemberAdd``): where to reach it, so every
    node (and every later leader) can replicate to it before it has joined the view."""

    node: NodeId
    address: str
    """Its client gRPC address."""
    peer_address: str
    """Its peer port."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberRetire:
    """An operator removed ``node`` (``MemberRemove``): its names move away (handoff while
    it is up, failover once it is down) and its id is never admitted again."""

    node: NodeId


Command = (
    Register
    | Unregister
    | Join
    | Leave
    | MemberUp
    | MemberDown
    | Released
    | Releases
    | MemberAdmit
    | MemberRetire
)
