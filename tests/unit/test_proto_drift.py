"""The committed code in registry/v1/ is what scripts/gen_protos.py makes from protos/,
and the wire messages mirror the core's messages field for field."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.message import Message as ProtoMessage

from registry.core import messages as core
from registry.v1 import raft_pb2

ROOT = Path(__file__).resolve().parents[2]
GENERATED = Path("registry") / "v1"
FIX = "run `python scripts/gen_protos.py` (or `make gen`) and commit registry/v1/"


def _files(folder: Path) -> dict[str, bytes]:
    if not folder.is_dir():
        return {}
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix in {".py", ".pyi"}
    }


def test_generated_code_matches_protos(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"gen_protos.py failed:\n{result.stdout}{result.stderr}"

    fresh = _files(tmp_path / GENERATED)
    committed = _files(ROOT / GENERATED)
    assert fresh, "gen_protos.py generated nothing"
    problems = [f"missing: {GENERATED / name}" for name in sorted(fresh.keys() - committed)]
    problems += [f"stale: {GENERATED / name}" for name in sorted(committed.keys() - fresh)]
    problems += [
        f"differs: {GENERATED / name}"
        for name in sorted(fresh.keys() & committed.keys())
        if fresh[name] != committed[name]
    ]
    assert not problems, (
        "generated protobuf code is out of date; " + FIX + "\n" + "\n".join(problems)
    )


def test_message_round_trips() -> None:
    msg = raft_pb2.Message(
        type=raft_pb2.MESSAGE_TYPE_APPEND,
        src="n1",
        dst="n2",
        term=7,
        log_term=6,
        index=41,
        entries=[
            raft_pb2.Entry(term=7, index=42, data=b"register x"),
            raft_pb2.Entry(term=7, index=43, type=raft_pb2.ENTRY_TYPE_CONF_CHANGE, data=b"0:n4"),
        ],
        commit=40,
        context=2**63,
        snapshot=raft_pb2.SnapshotMeta(
            index=30, term=5, conf=raft_pb2.ConfState(voters=["n1", "n2", "n3"], learners=["n4"])
        ),
        chunk=b"\x00\xff",
        offset=65536,
        done=True,
    )
    decoded = raft_pb2.Message.FromString(msg.SerializeToString(deterministic=True))
    assert decoded == msg
    assert decoded.entries[1].type == raft_pb2.ENTRY_TYPE_CONF_CHANGE
    assert list(decoded.snapshot.conf.voters) == ["n1", "n2", "n3"]
    assert not raft_pb2.Message(type=raft_pb2.MESSAGE_TYPE_HEARTBEAT).HasField("snapshot")


@pytest.mark.parametrize(
    ("core_enum", "proto_enum", "prefix"),
    [
        (core.MessageType, raft_pb2.MessageType, "MESSAGE_TYPE_"),
        (core.EntryType, raft_pb2.EntryType, "ENTRY_TYPE_"),
    ],
)
def test_enums_mirror_core(
    core_enum: type[core.MessageType] | type[core.EntryType],
    proto_enum: type[raft_pb2.MessageType] | type[raft_pb2.EntryType],
    prefix: str,
) -> None:
    core_values = {prefix + member.name: int(member) for member in core_enum}
    wire_values = {
        name: number for name, number in proto_enum.items() if not name.endswith("_UNSPECIFIED")
    }
    assert wire_values == core_values


@pytest.mark.parametrize(
    ("core_type", "proto_type"),
    [
        (core.Entry, raft_pb2.Entry),
        (core.ConfState, raft_pb2.ConfState),
        (core.SnapshotMeta, raft_pb2.SnapshotMeta),
        (core.Message, raft_pb2.Message),
        (core.HardState, raft_pb2.HardState),
    ],
)
def test_message_fields_mirror_core(core_type: type, proto_type: type[ProtoMessage]) -> None:
    core_fields = [f.name for f in dataclasses.fields(core_type)]
    wire_fields = [f.name for f in proto_type.DESCRIPTOR.fields]
    assert wire_fields == core_fields
