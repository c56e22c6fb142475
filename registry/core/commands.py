"""Registry commands: what goes into the Raft log, and how it is encoded.

The encoding is JSON with sorted keys (bytes as base64): deterministic, debuggable with
``jq``, and independent of the wire protobufs so the core stays free of generated code.
Every command carries a ``kind`` tag; decoding rejects anything unknown with
``InvalidCommand`` rather than guessing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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

_KINDS: dict[str, type[Any]] = {
    "register": Register,
    "unregister": Unregister,
    "join": Join,
    "leave": Leave,
    "member_up": MemberUp,
    "member_down": MemberDown,
    "released": Released,
    "releases": Releases,
    "member_admit": MemberAdmit,
    "member_retire": MemberRetire,
    "checkpoint": Checkpoint,
    "quit": Quit,
    "remind": Remind,
}
_TAGS = {cls: tag for tag, cls in _KINDS.items()}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidCommand(f"{where} must be base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text.encode(), validate=True)
    except ValueError:
        raise InvalidCommand(f"{where} is not valid base64") from None


# Decoding is strict about types: a command reaches the log from peers (``Forward``) and,
# once committed, is applied by every replica, so anything that decodes must be safe to
# apply. A string where an int belongs, or a list where a name belongs, would otherwise
# crash every replica when applied — and again at every restart.


def _fields(raw: object, where: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidCommand(f"{where} must be a JSON object, got {type(raw).__name__}")
    missing = sorted(required - raw.keys())
    if missing:
        raise InvalidCommand(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(raw.keys() - required - optional)
    if unknown:
        raise InvalidCommand(f"{where} has unknown fields {', '.join(unknown)}")
    return raw


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(f"{where} must be a string, got {type(value).__name__}")
    return value


def _int(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidCommand(f"{where} must be an integer, got {type(value).__name__}")
    return value


def _strs(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise InvalidCommand(f"{where} must be a list of strings, got {type(value).__name__}")
    return tuple(_str(item, f"{where}[{i}]") for i, item in enumerate(value))


def _spec_to_json(spec: NameSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name, "kind": spec.kind}
    if spec.args:
        out["args"] = _b64(spec.args)
    if spec.roles:
        out["roles"] = list(spec.roles)
    if spec.priority is not None:
        out["priority"] = [list(tier) for tier in spec.priority]
    if spec.restart is not None:
        r = spec.restart
        out["restart"] = [r.mode, r.max_restarts, r.window]
        if r.lazy or r.idle_after:
            out["restart"] += [r.lazy, r.idle_after]
    return out


def _spec_from_json(value: object, where: str) -> NameSpec:
    raw = _fields(value, where, {"name", "kind"}, {"args", "roles", "priority", "restart"})
    priority = raw.get("priority")
    if priority is not None and not isinstance(priority, list):
        raise InvalidCommand(f"{where}.priority must be a list of lists")
    return NameSpec(
        name=_str(raw["name"], f"{where}.name"),
        kind=_str(raw["kind"], f"{where}.kind"),
        args=_unb64(raw["args"], f"{where}.args") if "args" in raw else b"",
        roles=_strs(raw.get("roles", []), f"{where}.roles"),
        priority=None
        if priority is None
        else tuple(_strs(tier, f"{where}.priority[{i}]") for i, tier in enumerate(priority)),
        restart=_restart_from_json(raw["restart"], where) if "restart" in raw else None,
    )


def _restart_from_json(value: object, where: str) -> RestartPolicy:
    if not isinstance(value, list) or len(value) not in (3, 5):
        raise InvalidCommand(
            f"{where}.restart must be [mode, max_restarts, window(, lazy, idle_after)]"
        )
    window, lazy, idle_after = value[2], *(value[3:] or [False, 0.0])
    numbers = (window, idle_after)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
        raise InvalidCommand(f"{where}.restart window and idle_after must be numbers")
    if not isinstance(lazy, bool):
        raise InvalidCommand(f"{where}.restart lazy must be true or false")
    policy = RestartPolicy(
        mode=_str(value[0], f"{where}.restart mode"),
        max_restarts=_int(value[1], f"{where}.restart max_restarts"),
        window=float(window),
        lazy=lazy,
        idle_after=float(idle_after),
    )
    problem = policy.problem()
    if problem:
        raise InvalidCommand(f"{where}: {problem}")
    return policy


def _specs_from_json(specs: list[object], where: str) -> Iterator[NameSpec]:
    for i, spec in enumerate(specs):
        # Fast path for the common {"name", "kind"} shape: a batch of 1000 names should
        # not build error-message strings it never uses.
        if (
            type(spec) is dict
            and len(spec) == 2
            and type(name := spec.get("name")) is str
            and type(kind := spec.get("kind")) is str
        ):
            yield NameSpec(name=name, kind=kind)
        else:
            yield _spec_from_json(spec, f"{where}: specs[{i}]")


def _released_to_json(command: Released) -> dict[str, Any]:
    body: dict[str, Any] = {"name": command.name, "token": command.token}
    if command.state is not None:
        body["state"] = _b64(command.state)
    return body


def _released_from_json(raw: object, where: str, required: set[str]) -> Released:
    raw = _fields(raw, where, {"name", "token", *required}, {"state"})
    state = raw.get("state")
    return Released(
        name=_str(raw["name"], f"{where}: name"),
        token=_int(raw["token"], f"{where}: token"),
        state=None if state is None else _unb64(state, f"{where}: state"),
    )


def encode(command: Command) -> bytes:
    tag = _TAGS[type(command)]
    body: dict[str, Any]
    if isinstance(command, Register):
        body = {"specs": [_spec_to_json(s) for s in command.specs]}
    elif isinstance(command, Released):
        body = _released_to_json(command)
    elif isinstance(command, Releases):
        body = {"items": [_released_to_json(r) for r in command.items]}
    elif isinstance(command, Checkpoint):
        body = {
            "name": command.name,
            "token": command.token,
            "seq": command.seq,
            "state": _b64(command.state),
        }
    elif isinstance(command, MemberUp):
        body = {
            "node": command.node,
            "incarnation": command.incarnation,
            "address": command.address,
            "roles": list(command.roles),
            "kinds": list(command.kinds),
        }
        if command.draining:
            body["draining"] = True
    else:
        body = {k: getattr(command, k) for k in command.__dataclass_fields__}
    return json.dumps({"kind": tag, **body}, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes) -> Command:
    try:
        raw = json.loads(data)
    except (ValueError, RecursionError) as exc:
        # ValueError covers bad UTF-8 and bad JSON; RecursionError, absurdly deep nesting.
        raise InvalidCommand(f"not a registry command: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidCommand(f"not a registry command: a JSON {type(raw).__name__}")
    tag = raw.get("kind")
    cls = _KINDS.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise InvalidCommand(
            f"unknown command kind {tag!r}; expected one of {', '.join(sorted(_KINDS))}"
        )
    where = f"{tag} command"
    if cls is Register:
        raw = _fields(raw, where, {"kind", "specs"}, set())
        specs = raw["specs"]
        if not isinstance(specs, list):
            raise InvalidCommand(f"{where}: specs must be a list")
        return Register(specs=tuple(_specs_from_json(specs, where)))
    if cls is Released:
        return _released_from_json(raw, where, {"kind"})
    if cls is Releases:
        items = _fields(raw, where, {"kind", "items"}, set())["items"]
        if not isinstance(items, list) or not items:
            raise InvalidCommand(f"{where}: items must be a non-empty list")
        return Releases(
            items=tuple(
                _released_from_json(item, f"{where}: item {i}", set())
                for i, item in enumerate(items)
            )
        )
    if cls is MemberUp:
        raw = _fields(
            raw, where, {"kind", "node", "incarnation", "address", "roles", "kinds"}, {"draining"}
        )
        draining = raw.get("draining", False)
        if not isinstance(draining, bool):
            raise InvalidCommand(f"{where}: draining must be true or false")
        return MemberUp(
            node=_str(raw["node"], f"{where}: node"),
            incarnation=_int(raw["incarnation"], f"{where}: incarnation"),
            address=_str(raw["address"], f"{where}: address"),
            roles=_strs(raw["roles"], f"{where}: roles"),
            kinds=_strs(raw["kinds"], f"{where}: kinds"),
            draining=draining,
        )
    if cls is MemberDown:
        raw = _fields(raw, where, {"kind", "node", "incarnation"}, set())
        return MemberDown(
            node=_str(raw["node"], f"{where}: node"),
            incarnation=_int(raw["incarnation"], f"{where}: incarnation"),
        )
    if cls is MemberAdmit:
        raw = _fields(raw, where, {"kind", "node", "address", "peer_address"}, set())
        return MemberAdmit(
            node=_str(raw["node"], f"{where}: node"),
            address=_str(raw["address"], f"{where}: address"),
            peer_address=_str(raw["peer_address"], f"{where}: peer_address"),
        )
    if cls is MemberRetire:
        raw = _fields(raw, where, {"kind", "node"}, set())
        return MemberRetire(node=_str(raw["node"], f"{where}: node"))
    if cls is Checkpoint:
        raw = _fields(raw, where, {"kind", "name", "token", "seq", "state"}, set())
        return Checkpoint(
            name=_str(raw["name"], f"{where}: name"),
            token=_int(raw["token"], f"{where}: token"),
            seq=_int(raw["seq"], f"{where}: seq"),
            state=_unb64(raw["state"], f"{where}: state"),
        )
    if cls is Remind:
        raw = _fields(
            raw, where, {"kind", "name", "token", "reminder", "op", "due", "every", "period"}, set()
        )
        due, every = raw["due"], raw["every"]
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (due, every)):
            raise InvalidCommand(f"{where}: due and every must be numbers")
        op = _str(raw["op"], f"{where}: op")
        if op not in REMINDER_OPS:
            raise InvalidCommand(f"{where}: op must be one of {', '.join(REMINDER_OPS)}")
        return Remind(
            name=_str(raw["name"], f"{where}: name"),
            token=_int(raw["token"], f"{where}: token"),
            reminder=_str(raw["reminder"], f"{where}: reminder"),
            op=op,
            due=float(due),
            every=float(every),
            period=_int(raw["period"], f"{where}: period"),
        )
    if cls is Quit:
        raw = _fields(raw, where, {"kind", "name", "token"}, set())
        return Quit(
            name=_str(raw["name"], f"{where}: name"), token=_int(raw["token"], f"{where}: token")
        )
    if cls is Unregister:
        raw = _fields(raw, where, {"kind", "name"}, set())
        return Unregister(name=_str(raw["name"], f"{where}: name"))
    raw = _fields(raw, where, {"kind", "group", "name"}, set())
    group, name = _str(raw["group"], f"{where}: group"), _str(raw["name"], f"{where}: name")
    return Join(group=group, name=name) if cls is Join else Leave(group=group, name=name)
