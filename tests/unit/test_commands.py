"""Registry commands: encode/decode round trips, determinism, and strict decoding."""

from __future__ import annotations

import json

import pytest

from registry.core.commands import (
    Command,
    InvalidCommand,
    Join,
    Leave,
    MemberAdmit,
    MemberDown,
    MemberRetire,
    MemberUp,
    NameSpec,
    Register,
    Released,
    Releases,
    Unregister,
    decode,
    encode,
)
from registry.core.errors import RegistryError

ALL_BYTES = bytes(range(256))

COMMANDS: list[Command] = [
    Register(specs=(NameSpec(name="a", kind="k"),)),
    Register(
        specs=(
            NameSpec(name="room/1", kind="game", args=ALL_BYTES, roles=("web", "gpu")),
            NameSpec(name="sched", kind="cron", priority=(("n1",), ("n2", "n3"))),
            NameSpec(name="päivä ☃ 名前", kind="k", args=b"\x00", priority=()),
            NameSpec(name="empty-tier", kind="k", priority=((), ("n1",))),
        )
    ),
    Register(specs=()),
    Unregister(name="a"),
    Unregister(name='quote " and \\ backslash'),
    Join(group="g", name="a"),
    Leave(group="g", name="a"),
    MemberUp(node="n1", incarnation=3),
    MemberUp(
        node="n2", incarnation=1, address="10.0.0.2:7000", roles=("web", "db"), kinds=("a", "b")
    ),
    MemberUp(node="n3", incarnation=2**40, address="[::1]:7000", draining=True),
    MemberDown(node="n1", incarnation=7),
    MemberAdmit(node="n4", address="10.0.0.4:7000", peer_address="10.0.0.4:8000"),
    MemberRetire(node="n4"),
    Released(name="a", token=12),
    Released(name="a", token=12, state=b""),
    Released(name="a", token=12, state=ALL_BYTES),
    Releases(items=(Released(name="a", token=12), Released(name="b", token=3, state=b"s"))),
]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_round_trip(command: Command, binary: bool) -> None:
    data = encode(command, binary=binary)
    assert isinstance(data, bytes)
    assert data[:1] == (b"\x01" if binary else b"{")
    back = decode(data)
    assert back == command
    assert type(back) is type(command)


def test_round_trip_keeps_the_difference_between_no_state_and_empty_state() -> None:
    fresh = decode(encode(Released(name="a", token=1, state=None)))
    empty = decode(encode(Released(name="a", token=1, state=b"")))
    assert isinstance(fresh, Released) and isinstance(empty, Released)
    assert fresh.state is None
    assert empty.state == b""


def test_round_trip_keeps_priority_tier_order_and_role_order() -> None:
    spec = NameSpec(name="x", kind="k", roles=("z", "a"), priority=(("c", "b"), ("a",)))
    back = decode(encode(Register(specs=(spec,))))
    assert isinstance(back, Register)
    assert back.specs[0].priority == (("c", "b"), ("a",))
    assert back.specs[0].roles == ("z", "a")


def test_every_command_type_is_covered() -> None:
    assert {type(c) for c in COMMANDS} == {
        Register,
        Unregister,
        Join,
        Leave,
        MemberUp,
        MemberDown,
        Released,
        Releases,
        MemberAdmit,
        MemberRetire,
    }


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_encoding_is_deterministic(command: Command, binary: bool) -> None:
    again = decode(encode(command, binary=binary))  # an equal but distinct object
    assert encode(command, binary=binary) == encode(again, binary=binary)


def test_the_older_encoding_is_compact_sorted_json() -> None:
    data = encode(MemberDown(node="n1", incarnation=2), binary=False)
    assert data == b'{"incarnation":2,"kind":"member_down","node":"n1"}'
    body = json.loads(encode(Released(name="a", token=1, state=b"hi"), binary=False))
    assert body == {"kind": "released", "name": "a", "token": 1, "state": "aGk="}


def test_invalid_command_is_a_registry_error_and_a_value_error() -> None:
    with pytest.raises(RegistryError):
        decode(b"nope")
    with pytest.raises(ValueError):
        decode(b"nope")


GARBAGE = [
    (b"", "not JSON"),
    (b"\xff\xfe\x00", "not JSON"),
    (b"not json", "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b"[]", "a JSON list"),
    (b'"register"', "a JSON str"),
    (b"42", "a JSON int"),
    (b"null", "a JSON NoneType"),
    (b"{}", "unknown command kind None"),
    (b'{"kind":"bogus"}', "unknown command kind 'bogus'"),
    (b'{"kind":7}', "unknown command kind 7"),
    (b'{"kind":"unregister"}', "unregister command is missing name"),
    (b'{"kind":"join","name":"a"}', "join command is missing group"),
    (b'{"kind":"released","name":"a"}', "released command is missing token"),
    (b'{"kind":"member_up","node":"n1"}', "member_up command is missing"),
    (b'{"kind":"register"}', "register command is missing specs"),
    (b'{"kind":"register","specs":[{"kind":"k"}]}', "specs[0] is missing name"),
    (b'{"kind":"unregister","name":"a","x":1}', "unknown fields x"),
    (b'{"kind":"unregister","name":5}', "name must be a string, got int"),
    (b'{"kind":"join","group":"g","name":["x"]}', "name must be a string, got list"),
    (b'{"kind":"member_down","node":"n1","incarnation":"1"}', "incarnation must be an integer"),
    (b'{"kind":"member_down","node":"n1","incarnation":true}', "incarnation must be an integer"),
    (b'{"kind":"released","name":"a","token":1.5}', "token must be an integer, got float"),
    (b'{"kind":"released","name":"a","token":Infinity}', "token must be an integer"),
    (b'{"kind":"released","name":"a","token":1,"state":"***"}', "state is not valid base64"),
    (b'{"kind":"released","name":"a","token":1,"state":5}', "state must be base64 text"),
    (b'{"kind":"register","specs":"abc"}', "specs must be a list"),
    (b'{"kind":"releases","items":[]}', "items must be a non-empty list"),
    (b'{"kind":"releases","items":{}}', "items must be a non-empty list"),
    (b'{"kind":"releases","items":[{"name":"a"}]}', "item 0 is missing token"),
    (b'{"kind":"releases","items":[{"name":"a","token":1,"kind":"x"}]}', "unknown fields kind"),
    (b'{"kind":"register","specs":[1]}', "specs[0] must be a JSON object"),
    (b'{"kind":"register","specs":[{"name":"a","kind":"k","args":"a"}]}', "args is not valid"),
    (b'{"kind":"register","specs":[{"name":"a","kind":"k","roles":"web"}]}', "roles must be a"),
    (b'{"kind":"register","specs":[{"name":"a","kind":"k","roles":[1]}]}', "roles[0] must be"),
    (b'{"kind":"register","specs":[{"name":"a","kind":"k","priority":"ab"}]}', "priority must"),
    (b'{"kind":"register","specs":[{"name":"a","kind":"k","priority":["a"]}]}', "priority[0]"),
    (
        b'{"kind":"member_up","node":"n1","incarnation":1,"address":"","roles":[],"kinds":{}}',
        "kinds must be a list",
    ),
]


@pytest.mark.parametrize(("data", "why"), GARBAGE, ids=[repr(d[:40]) for d, _ in GARBAGE])
def test_garbage_raises_invalid_command_with_a_readable_message(data: bytes, why: str) -> None:
    with pytest.raises(InvalidCommand) as err:
        decode(data)
    message = str(err.value)
    assert why in message
    assert len(message) < 300, "the message must stay readable, not dump the input"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_decode_never_raises_anything_but_invalid_command_on_mutations(binary: bool) -> None:
    """Flip, drop and duplicate every byte of a valid encoding: decode either returns a
    command that re-encodes identically, or raises InvalidCommand — nothing else."""
    data = encode(
        Register(
            specs=(
                NameSpec(name="a", kind="k", args=b"xy", roles=("r",), priority=(("n",),)),
                NameSpec(name="bb", kind="kk"),
            )
        ),
        binary=binary,
    )
    outcomes = {"ok": 0, "invalid": 0}
    for i in range(len(data)):
        for variant in (
            data[:i] + data[i + 1 :],
            data[:i] + bytes([data[i] ^ 0x20]) + data[i + 1 :],
            data[:i] + data[i : i + 1] * 2 + data[i + 1 :],
        ):
            try:
                command = decode(variant)
            except InvalidCommand:
                outcomes["invalid"] += 1
            else:
                outcomes["ok"] += 1
                assert decode(encode(command)) == command
    assert outcomes["invalid"] > 0 and outcomes["ok"] > 0
