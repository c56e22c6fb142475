"""Registry commands: what goes into the Raft log, and how it is encoded.

Two encodings, told apart by the first byte (a version sniff):

- binary (``registry.core.command_binary``, first byte ``0x01``): what ``encode`` writes
  by default. Compact (raw bytes, varints) and independent of the wire protobufs so the
  core stays free of generated code.
- JSON with sorted keys (bytes as base64, first byte ``{``): what every entry was before
  the binary one; still decoded, so old logs and snapshots load. ``encode(binary=False)``
  writes it while a node of an older release, which reads only JSON, may still read the
  log (a rolling upgrade; ``registry.node.transport`` learns which codecs peers read).

Every command carries a kind tag; decoding rejects anything unknown with
``InvalidCommand`` rather than guessing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from registry.core import command_binary
from registry.core.command_types import (
    REMINDER_OPS,
    RESTART_MODES,
    Checkpoint,
    Command,
    InvalidCommand,
    Join,
    Leave,
    MemberAdmit,
    MemberDown,
    MemberRetire,
    MemberUp,
    NameSpec,
    Priority,
    Quit,
    Register,
    Released,
    Releases,
    Remind,
    RestartPolicy,
    Unregister,
    shared_restart_policy,
)

__all__ = [
    "REMINDER_OPS",
    "RESTART_MODES",
    "Checkpoint",
    "Command",
    "InvalidCommand",
    "Join",
    "Leave",
    "MemberAdmit",
    "MemberDown",
    "MemberRetire",
    "MemberUp",
    "NameSpec",
    "Priority",
    "Quit",
    "Register",
    "Released",
    "Releases",
    "Remind",
    "RestartPolicy",
    "Unregister",
    "decode",
    "encode",
]

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
_BINARY = bytes((command_binary.FORMAT,))


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
    policy = shared_restart_policy(
        _str(value[0], f"{where}.restart mode"),
        _int(value[1], f"{where}.restart max_restarts"),
        float(window),
        lazy,
        float(idle_after),
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


def encode(command: Command, *, binary: bool = True) -> bytes:
    """The log entry for ``command``: binary, or the older JSON (see the docstring)."""
    if binary:
        return command_binary.encode(command)
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
    """Either encoding (rule: the first byte tells them apart)."""
    if data[:1] == _BINARY:
        return command_binary.decode(data)
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
