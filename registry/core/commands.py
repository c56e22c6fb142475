"""Registry commands: what goes into the Raft log, and how it is encoded.

The encoding is JSON with sorted keys (bytes as base64): deterministic, debuggable with
``jq``, and independent of the wire protobufs so the core stays free of generated code.
Every command carries a ``kind`` tag; decoding rejects anything unknown with
``InvalidCommand`` rather than guessing.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

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


Command = Register | Unregister | Join | Leave | MemberUp | MemberDown | Released

_KINDS: dict[str, type[Any]] = {
    "register": Register,
    "unregister": Unregister,
    "join": Join,
    "leave": Leave,
    "member_up": MemberUp,
    "member_down": MemberDown,
    "released": Released,
}
_TAGS = {cls: tag for tag, cls in _KINDS.items()}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise InvalidCommand("expected base64 text")
    return base64.b64decode(text.encode(), validate=True)


def _spec_to_json(spec: NameSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"name": spec.name, "kind": spec.kind}
    if spec.args:
        out["args"] = _b64(spec.args)
    if spec.roles:
        out["roles"] = list(spec.roles)
    if spec.priority is not None:
        out["priority"] = [list(tier) for tier in spec.priority]
    return out


def _spec_from_json(raw: dict[str, Any]) -> NameSpec:
    priority = raw.get("priority")
    return NameSpec(
        name=str(raw["name"]),
        kind=str(raw["kind"]),
        args=_unb64(raw["args"]) if "args" in raw else b"",
        roles=tuple(str(r) for r in raw.get("roles", ())),
        priority=None
        if priority is None
        else tuple(tuple(str(n) for n in tier) for tier in priority),
    )


def encode(command: Command) -> bytes:
    tag = _TAGS[type(command)]
    body: dict[str, Any]
    if isinstance(command, Register):
        body = {"specs": [_spec_to_json(s) for s in command.specs]}
    elif isinstance(command, Released):
        body = {"name": command.name, "token": command.token}
        if command.state is not None:
            body["state"] = _b64(command.state)
    elif isinstance(command, MemberUp):
        body = {
            "node": command.node,
            "incarnation": command.incarnation,
            "address": command.address,
            "roles": list(command.roles),
            "kinds": list(command.kinds),
        }
    else:
        body = {k: getattr(command, k) for k in command.__dataclass_fields__}
    return json.dumps({"kind": tag, **body}, sort_keys=True, separators=(",", ":")).encode()


def decode(data: bytes) -> Command:
    try:
        raw = json.loads(data)
        cls = _KINDS[raw.pop("kind")]
        if cls is Register:
            return Register(specs=tuple(_spec_from_json(s) for s in raw["specs"]))
        if cls is Released:
            state = raw.get("state")
            return Released(
                name=str(raw["name"]),
                token=int(raw["token"]),
                state=None if state is None else _unb64(state),
            )
        if cls is MemberUp:
            return MemberUp(
                node=str(raw["node"]),
                incarnation=int(raw["incarnation"]),
                address=str(raw["address"]),
                roles=tuple(str(r) for r in raw["roles"]),
                kinds=tuple(str(k) for k in raw["kinds"]),
            )
        command: Command = cls(**raw)
        return command
    except InvalidCommand:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InvalidCommand(f"not a registry command: {exc}") from exc
