"""The compact binary encoding of registry commands (format version 1).

Rules:

1. An entry starts with the format byte ``0x01``, then one byte naming the command
   (``TAGS``), then its fields in declaration order. A JSON entry (the encoding before
   this one) always starts with ``{``, so one byte tells them apart; old logs and
   snapshots keep loading (``registry.core.commands.decode`` sniffs).
2. Integers are zigzag varints; lengths and counts are unsigned varints; a string is
   its length then its UTF-8 (lone surrogates pass, as JSON's escapes let them); bytes
   are a length then the bytes, raw (no base64: a 4 MiB ``args`` costs 4 MiB).
3. A name spec starts with a flags byte (args, roles, priority, restart policy present)
   so the common ``{name, kind}`` spec costs its two strings and three bytes. Floats
   (reminder times, restart windows) are 8-byte big-endian IEEE doubles.
4. Decoding is as strict as JSON's: unknown tags or flags, a field past the end,
   invalid UTF-8 or trailing bytes raise ``InvalidCommand`` — a committed entry is
   applied by every replica, so anything that decodes must be safe to apply.
5. Encoding is deterministic (equal commands, equal bytes). A new field or command is a
   new format byte or tag, never a silent change of these.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from registry.core.command_types import (
    REMINDER_OPS,
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
    Quit,
    Register,
    Released,
    Releases,
    Remind,
    RestartPolicy,
    Unregister,
    shared_restart_policy,
)

FORMAT = 0x01
"""The first byte of a version-1 binary entry (a JSON entry starts with ``{``)."""
TAGS: dict[type[Command], int] = {
    Register: 1,
    Unregister: 2,
    Join: 3,
    Leave: 4,
    MemberUp: 5,
    MemberDown: 6,
    Released: 7,
    Releases: 8,
    MemberAdmit: 9,
    MemberRetire: 10,
    Checkpoint: 11,
    Quit: 12,
    Remind: 13,
}
_ARGS, _ROLES, _PRIORITY, _RESTART = 1, 2, 4, 8
_SPEC_FLAGS = _ARGS | _ROLES | _PRIORITY | _RESTART
_F64 = struct.Struct(">d")
_HAS_STATE = 1


# -- encoding ------------------------------------------------------------------------


def _uvarint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _int(n: int, out: bytearray) -> None:
    _uvarint(n << 1 if n >= 0 else ((-n) << 1) - 1, out)


def _bytes(data: bytes, out: bytearray) -> None:
    _uvarint(len(data), out)
    out += data


def _str(text: str, out: bytearray) -> None:
    _bytes(text.encode("utf-8", "surrogatepass"), out)


def _strs(items: tuple[str, ...], out: bytearray) -> None:
    _uvarint(len(items), out)
    for item in items:
        _str(item, out)


def _f64(value: float, out: bytearray) -> None:
    out += _F64.pack(value)


def _spec(spec: NameSpec, out: bytearray) -> None:
    flags = (
        (_ARGS if spec.args else 0)
        | (_ROLES if spec.roles else 0)
        | (_PRIORITY if spec.priority is not None else 0)
        | (_RESTART if spec.restart is not None else 0)
    )
    out.append(flags)
    _str(spec.name, out)
    _str(spec.kind, out)
    if spec.args:
        _bytes(spec.args, out)
    if spec.roles:
        _strs(spec.roles, out)
    if spec.priority is not None:
        _uvarint(len(spec.priority), out)
        for tier in spec.priority:
            _strs(tier, out)
    if spec.restart is not None:
        policy = spec.restart
        _str(policy.mode, out)
        _int(policy.max_restarts, out)
        _f64(policy.window, out)
        out.append(1 if policy.lazy else 0)
        _f64(policy.idle_after, out)


def _released(r: Released, out: bytearray) -> None:
    _str(r.name, out)
    _int(r.token, out)
    out.append(0 if r.state is None else _HAS_STATE)
    if r.state is not None:
        _bytes(r.state, out)


def encode(command: Command) -> bytes:
    out = bytearray((FORMAT, TAGS[type(command)]))
    if isinstance(command, Register):
        _uvarint(len(command.specs), out)
        for spec in command.specs:
            _spec(spec, out)
    elif isinstance(command, Released):
        _released(command, out)
    elif isinstance(command, Releases):
        _uvarint(len(command.items), out)
        for item in command.items:
            _released(item, out)
    elif isinstance(command, MemberUp):
        _str(command.node, out)
        _int(command.incarnation, out)
        _str(command.address, out)
        _strs(command.roles, out)
        _strs(command.kinds, out)
        out.append(1 if command.draining else 0)
    elif isinstance(command, MemberDown):
        _str(command.node, out)
        _int(command.incarnation, out)
    elif isinstance(command, MemberAdmit):
        _str(command.node, out)
        _str(command.address, out)
        _str(command.peer_address, out)
    elif isinstance(command, MemberRetire):
        _str(command.node, out)
    elif isinstance(command, Unregister):
        _str(command.name, out)
    elif isinstance(command, Checkpoint):
        _str(command.name, out)
        _int(command.token, out)
        _int(command.seq, out)
        _bytes(command.state, out)
    elif isinstance(command, Quit):
        _str(command.name, out)
        _int(command.token, out)
    elif isinstance(command, Remind):
        _str(command.name, out)
        _int(command.token, out)
        _str(command.reminder, out)
        _str(command.op, out)
        _f64(command.due, out)
        _f64(command.every, out)
        _int(command.period, out)
    else:
        _str(command.group, out)
        _str(command.name, out)
    return bytes(out)


# -- decoding ------------------------------------------------------------------------


class _Reader:
    """A cursor over one entry; every read checks the bounds (rule 4)."""

    __slots__ = ("data", "end", "pos", "where")

    def __init__(self, data: bytes, where: str) -> None:
        self.data, self.pos, self.end, self.where = data, 2, len(data), where

    def fail(self, what: str) -> InvalidCommand:
        return InvalidCommand(f"{self.where}: {what} (at byte {self.pos} of {self.end})")

    def byte(self) -> int:
        if self.pos >= self.end:
            raise self.fail("truncated")
        self.pos += 1
        return self.data[self.pos - 1]

    def uvarint(self) -> int:
        data, pos, shift, n = self.data, self.pos, 0, 0
        while True:
            if pos >= self.end or shift > 63:
                self.pos = pos
                raise self.fail("truncated or overlong varint")
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                self.pos = pos
                return n
            shift += 7

    def sint(self) -> int:
        n = self.uvarint()
        return -((n + 1) >> 1) if n & 1 else n >> 1

    def blob(self) -> bytes:
        size = self.uvarint()
        start = self.pos
        if size > self.end - start:
            raise self.fail(f"a {size}-byte field runs past the end")
        self.pos = start + size
        return self.data[start : self.pos]

    def text(self) -> str:
        # The hot path of a 1000-name register: a short string's length is one byte.
        data, pos = self.data, self.pos
        if pos < self.end and data[pos] < 0x80:
            start, stop = pos + 1, pos + 1 + data[pos]
            if stop <= self.end:
                self.pos = stop
                try:
                    return data[start:stop].decode("utf-8", "surrogatepass")
                except UnicodeDecodeError:
                    raise self.fail("a string is not valid UTF-8") from None
        try:
            return self.blob().decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise self.fail("a string is not valid UTF-8") from None

    def strs(self) -> tuple[str, ...]:
        return tuple(self.text() for _ in range(self.count()))

    def count(self) -> int:
        n = self.uvarint()
        if n > self.end - self.pos:  # every item takes at least a byte
            raise self.fail(f"a count of {n} is more than the bytes left")
        return n

    def f64(self) -> float:
        if self.end - self.pos < 8:
            raise self.fail("truncated float")
        self.pos += 8
        value: float = _F64.unpack_from(self.data, self.pos - 8)[0]
        return value

    def flag(self) -> bool:
        b = self.byte()
        if b > 1:
            raise self.fail(f"a flag byte is {b}, not 0 or 1")
        return b == 1


def _read_spec(r: _Reader) -> NameSpec:
    flags = r.byte()
    if flags & ~_SPEC_FLAGS:
        raise r.fail(f"unknown name spec flags {flags:#x}")
    name, kind = r.text(), r.text()
    if not flags:
        return NameSpec(name=name, kind=kind)
    return NameSpec(
        name=name,
        kind=kind,
        args=r.blob() if flags & _ARGS else b"",
        roles=r.strs() if flags & _ROLES else (),
        priority=tuple(r.strs() for _ in range(r.count())) if flags & _PRIORITY else None,
        restart=_read_restart(r) if flags & _RESTART else None,
    )


def _read_restart(r: _Reader) -> RestartPolicy:
    policy = shared_restart_policy(r.text(), r.sint(), r.f64(), r.flag(), r.f64())
    problem = policy.problem()
    if problem:
        raise r.fail(problem)
    return policy


def _remind(r: _Reader) -> Command:
    command = Remind(
        name=r.text(),
        token=r.sint(),
        reminder=r.text(),
        op=r.text(),
        due=r.f64(),
        every=r.f64(),
        period=r.sint(),
    )
    if command.op not in REMINDER_OPS:
        raise r.fail(f"op must be one of {', '.join(REMINDER_OPS)}")
    return command


def _read_released(r: _Reader) -> Released:
    name, token = r.text(), r.sint()
    return Released(name=name, token=token, state=r.blob() if r.flag() else None)


def _register(r: _Reader) -> Command:
    n = r.count()
    specs: list[NameSpec] = []
    data, end = r.data, r.end
    while len(specs) < n:
        # Inline fast path for a spec of flags 0 with two short strings (a batch of 1000
        # names is 1000 of these); anything else, or any doubt, takes the checked path.
        pos = r.pos
        if pos + 2 < end and data[pos] == 0 and data[pos + 1] < 0x80:
            kind_at = pos + 2 + data[pos + 1]
            if kind_at < end and data[kind_at] < 0x80:
                stop = kind_at + 1 + data[kind_at]
                if stop <= end:
                    try:
                        name = data[pos + 2 : kind_at].decode("utf-8", "surrogatepass")
                        kind = data[kind_at + 1 : stop].decode("utf-8", "surrogatepass")
                    except UnicodeDecodeError:
                        raise r.fail("a string is not valid UTF-8") from None
                    r.pos = stop
                    specs.append(NameSpec(name=name, kind=kind))
                    continue
        specs.append(_read_spec(r))
    return Register(specs=tuple(specs))


def _releases(r: _Reader) -> Command:
    n = r.count()
    if not n:
        raise r.fail("items must not be empty")
    return Releases(items=tuple(_read_released(r) for _ in range(n)))


def _member_up(r: _Reader) -> Command:
    return MemberUp(
        node=r.text(),
        incarnation=r.sint(),
        address=r.text(),
        roles=r.strs(),
        kinds=r.strs(),
        draining=r.flag(),
    )


_READERS: dict[int, tuple[str, Callable[[_Reader], Command]]] = {
    1: ("register", _register),
    2: ("unregister", lambda r: Unregister(name=r.text())),
    3: ("join", lambda r: Join(group=r.text(), name=r.text())),
    4: ("leave", lambda r: Leave(group=r.text(), name=r.text())),
    5: ("member_up", _member_up),
    6: ("member_down", lambda r: MemberDown(node=r.text(), incarnation=r.sint())),
    7: ("released", _read_released),
    8: ("releases", _releases),
    9: (
        "member_admit",
        lambda r: MemberAdmit(node=r.text(), address=r.text(), peer_address=r.text()),
    ),
    10: ("member_retire", lambda r: MemberRetire(node=r.text())),
    11: (
        "checkpoint",
        lambda r: Checkpoint(name=r.text(), token=r.sint(), seq=r.sint(), state=r.blob()),
    ),
    12: ("quit", lambda r: Quit(name=r.text(), token=r.sint())),
    13: ("remind", _remind),
}


def decode(data: bytes) -> Command:
    """``data[0]`` is ``FORMAT`` (the caller sniffed it)."""
    if len(data) < 2:
        raise InvalidCommand("binary command: truncated before its tag")
    found = _READERS.get(data[1])
    if found is None:
        raise InvalidCommand(f"binary command: unknown tag {data[1]}")
    name, read = found
    r = _Reader(data, f"binary {name} command")
    command = read(r)
    if r.pos != r.end:
        raise r.fail(f"{r.end - r.pos} trailing bytes")
    return command
