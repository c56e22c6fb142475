"""The binary log entry encoding: compact, strict, and old JSON entries still load."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from registry.core.commands import (
    InvalidCommand,
    NameSpec,
    Register,
    Released,
    Unregister,
    decode,
    encode,
)
from registry.core.messages import Entry, HardState, Ready
from registry.core.replica import Replica
from registry.core.timing import Timing
from registry.node.storage import FileStorage
from registry.node.storage_check import inspect

OLD_JSON_ENTRIES = [
    # The bytes the JSON encoder of the previous release wrote (not re-encoded here, so a
    # change to today's JSON encoder cannot hide a change in what old logs contain).
    b'{"address":"n1:7000","incarnation":1,"kind":"member_up","kinds":[],"node":"n1",'
    b'"roles":["web"]}',
    b'{"kind":"register","specs":[{"kind":"echo","name":"old/1"},'
    b'{"args":"aGk=","kind":"echo","name":"old/2","roles":["web"]}]}',
    b'{"group":"g","kind":"join","name":"old/1"}',
]


def test_a_one_name_register_is_small_and_args_are_not_inflated() -> None:
    one = Register(specs=(NameSpec(name="bench/one/12345", kind="echo"),))
    assert len(encode(one)) == 2 + 1 + 1 + 1 + len("bench/one/12345") + 1 + len("echo")
    assert len(encode(one)) < len(encode(one, binary=False)) / 2
    args = bytes(4 << 20)
    big = Register(specs=(NameSpec(name="big", kind="k", args=args),))
    assert len(encode(big)) - len(args) < 16  # raw bytes, not base64 (+33 %)


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31, -(2**63), 2**64])
def test_integers_keep_their_value_and_sign(value: int) -> None:
    back = decode(encode(Released(name="a", token=value)))
    assert isinstance(back, Released) and back.token == value


def test_strings_keep_lone_surrogates_as_json_did() -> None:
    name = "a\ud800b"
    for binary in (True, False):
        assert decode(encode(Unregister(name=name), binary=binary)) == Unregister(name=name)


GARBAGE = [
    (b"\x01", "truncated before its tag"),
    (b"\x01\x63", "unknown tag 99"),
    (b"\x01\x02", "truncated or overlong varint"),
    (b"\x01\x02\x05ab", "runs past the end"),
    (b"\x01\x02\x02\xff\xfe", "not valid UTF-8"),
    (b"\x01\x02\x01ax", "1 trailing bytes"),
    (b"\x01\x02" + b"\xff" * 11 + b"\x01", "overlong varint"),
    (b"\x01\x01\x09\x00\x01a\x01k", "count of 9 is more than the bytes left"),
    (b"\x01\x01\x01\x10\x01a\x01k", "unknown name spec flags 0x10"),
    (b"\x01\x01\x01\x00\x01a\x05k", "runs past the end"),
    (b"\x01\x08\x00", "items must not be empty"),
    (b"\x01\x07\x01a\x02\x02", "flag byte is 2"),
]


@pytest.mark.parametrize(("data", "why"), GARBAGE, ids=[repr(d[:12]) for d, _ in GARBAGE])
def test_garbage_raises_invalid_command_with_a_readable_message(data: bytes, why: str) -> None:
    with pytest.raises(InvalidCommand, match=why):
        decode(data)


def test_random_bytes_after_the_format_byte_never_raise_anything_else() -> None:
    rng = random.Random(21)
    for _ in range(3000):
        data = b"\x01" + bytes(rng.randrange(256) for _ in range(rng.randrange(12)))
        try:
            command = decode(data)
        except InvalidCommand:
            continue
        assert decode(encode(command)) == command


def _old_log(data_dir: Path) -> None:
    """A data directory as the older release left it: JSON entries, committed."""
    entries = [Entry(term=1, index=i + 1, data=data) for i, data in enumerate(OLD_JSON_ENTRIES)]
    mixed = encode(Register(specs=(NameSpec(name="new/1", kind="echo"),)))  # then binary
    entries.append(Entry(term=1, index=len(entries) + 1, data=mixed))
    with FileStorage(data_dir, fsync=False) as st:
        st.load()
        st.persist(
            incarnation=1,
            ready=Ready(
                entries=tuple(entries),
                hard_state=HardState(term=1, vote="n1", commit=len(entries)),
            ),
            compaction=None,
        )


def test_a_log_written_with_json_entries_loads_and_applies(tmp_path: Path) -> None:
    _old_log(tmp_path)
    assert inspect(tmp_path).names == 3  # the doctor applies the committed entries

    with FileStorage(tmp_path, fsync=False) as st:
        loaded = st.load()
    timing = Timing()
    replica = Replica(
        timing.raft("n1", voters=frozenset({"n1"})),
        timing.membership(),
        random.Random(1),
        incarnation=2,
        persisted=loaded.persisted,
        address="n1:7000",
    )
    applied = []
    for _ in range(200):
        replica.tick()
        while replica.has_ready():
            ready = replica.ready()
            applied += [a for a in ready.applied if a.index <= len(OLD_JSON_ENTRIES) + 1]
            replica.advance(ready)
        if len(applied) == len(OLD_JSON_ENTRIES) + 1:
            break
    assert [a.result.ok for a in applied] == [True] * len(applied)
    assert len(applied) == len(OLD_JSON_ENTRIES) + 1
    old2 = replica.state.registered("old/2")
    assert old2 is not None and old2.spec.args == b"hi" and old2.spec.roles == ("web",)
    assert replica.state.registered("old/1") is not None
    assert replica.state.registered("new/1") is not None
    assert "old/1" in replica.state.groups["g"]
