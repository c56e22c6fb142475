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


RESTART_MODES = ("permanent", "transient", "temporary")
"""``permanent``: restarted after a crash or ``ctx.stop()``; ``transient``: restarted
only after a crash; ``temporary``: never restarted, the name is unregistered when its
activation stops (crash or ``ctx.stop()``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """How a name's activation is restarted, started and passivated on its node."""

    mode: str = "permanent"
    """One of ``RESTART_MODES``."""
    max_restarts: int = 5
    """Crashes tolerated within ``window`` seconds; one more marks the activation failed."""
    window: float = 10.0
    lazy: bool = False
    """Placed, but its instance is created only at its first message (call, cast,
    reminder)."""
    idle_after: float = 0.0
    """Seconds without messages after which the instance is passivated: its
    ``begin_handoff`` state is checkpointed and the instance stops; the next message
    starts a new one from it. 0: never."""

    def problem(self) -> str | None:
        """Why this policy is unusable, or ``None``."""
        if self.mode not in RESTART_MODES:
            return f"restart must be one of {', '.join(RESTART_MODES)}, got {self.mode!r}"
        if self.max_restarts < 0:
            return f"max_restarts must be >= 0, got {self.max_restarts}"
        if not 0 < self.window <= 86400:
            return f"restart window must be in (0, 86400] s, got {self.window}"
        if not 0 <= self.idle_after <= 86400 * 30:
            return f"idle_after must be in [0, 30 days] s, got {self.idle_after}"
        return None


_SHARED_POLICIES: dict[tuple[object, ...], RestartPolicy] = {}
_SHARED_POLICIES_MAX = 1024


def shared_restart_policy(
    mode: str, max_restarts: int, window: float, lazy: bool, idle_after: float
) -> RestartPolicy:
    """An equal ``RestartPolicy`` built before, or a new one (it is immutable): names
    registered in bulk mostly share one, and building it per name was a tenth of a
    lazy registration's decoding. The caller still checks ``problem()``."""
    key = (mode, type(max_restarts), max_restarts, window, type(lazy), lazy, idle_after)
    policy = _SHARED_POLICIES.get(key)
    if policy is None:
        if len(_SHARED_POLICIES) >= _SHARED_POLICIES_MAX:
            _SHARED_POLICIES.clear()
        policy = RestartPolicy(
            mode=mode, max_restarts=max_restarts, window=window, lazy=lazy, idle_after=idle_after
        )
        _SHARED_POLICIES[key] = policy
    return policy


@dataclass(frozen=True, slots=True, kw_only=True)
class NameSpec:
    name: str
    kind: str
    args: bytes = b""
    roles: tuple[str, ...] = ()
    """The host must have every one of these roles."""
    priority: Priority | None = None
    """Place by priority list instead of the hash ring."""
    restart: RestartPolicy | None = None
    """``None``: the node's defaults (permanent, its ``max_restarts``/``restart_window``)."""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """Activation ``token`` of ``name`` persists ``state`` (``registry.core.durable``)."""

    name: str
    token: int
    seq: int
    """Orders one activation's checkpoints: an older one never overwrites a newer one."""
    state: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit:
    """Activation ``token`` of ``name`` ended itself and unregisters its name
    (``ctx.stop(unregister=True)``, or a ``temporary`` name's activation stopped)."""

    name: str
    token: int


REMINDER_OPS = ("set", "cancel", "fired")


@dataclass(frozen=True, slots=True, kw_only=True)
class Remind:
    """Activation ``token`` of ``name`` sets, cancels, or acknowledges a firing of its
    durable reminder ``reminder`` (``registry.core.durable`` rules 6–8)."""

    name: str
    token: int
    reminder: str
    op: str
    """One of ``REMINDER_OPS``."""
    due: float = 0.0
    """``set``: wall-clock time (Unix seconds) of the first firing."""
    every: float = 0.0
    """``set``: seconds between firings; 0 fires once."""
    period: int = 0
    """``fired``: which period was handled."""


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
    | Checkpoint
    | Quit
    | Remind
)
