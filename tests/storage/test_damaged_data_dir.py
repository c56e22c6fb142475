"""A damaged data directory is refused, never loaded with less than was acknowledged (G9).

Each test copies a real node's data directory (``stopped_cluster``: names registered in
two terms, small segments, several snapshots), damages the copy as an operator or a bad
disk would, and asserts that:

- ``registry node`` on it exits with code 2 and prints exactly one ``error:`` line naming
  the damaged file, what is wrong, and the recovery procedure — no traceback;
- ``registry doctor`` reports the same problem (exit 2) and changes nothing on disk;
- on the undamaged copy, doctor reports every acknowledged name and exits 0.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cluster.harness import LocalCluster
from tests.storage.conftest import SMALL_STORAGE, Stopped, run_registry

EXIT_BAD_DATA = 2
RECOVERY = "docs/operations.md"
_HEADER = struct.Struct("<HBII")  # the record header documented in registry/node/storage.py
_SEGMENT = re.compile(r"log-(\d{10})-(\d{20})\.seg")


def segments(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if _SEGMENT.fullmatch(p.name))


def snapshot_index(d: Path) -> int:
    [snap] = d.glob("snapshot-*.snap")
    return int(snap.name.split("-")[1].split(".")[0])


def first_index(seg: Path) -> int:
    match = _SEGMENT.fullmatch(seg.name)
    assert match
    return int(match[2])


def live_middle(d: Path) -> Path:
    """A segment that is not the last and holds entries after the snapshot."""
    at = snapshot_index(d)
    found = [s for s in segments(d)[:-1] if first_index(s) > at + 1]
    assert found, f"the source dir has no live middle segment: {segments(d)}, snapshot {at}"
    return found[len(found) // 2]


def record_starts(seg: Path) -> list[int]:
    raw, off, starts = seg.read_bytes(), 0, []
    while off < len(raw):
        starts.append(off)
        off += _HEADER.size + _HEADER.unpack_from(raw, off)[2]
    return starts


def hard_state_record(term: int, commit: int, vote: str) -> bytes:
    """A HARDSTATE record in the documented format (type 2, payload term, commit, vote)."""
    payload = struct.pack("<QQ", term, commit) + vote.encode()
    head = _HEADER.pack(0xC351, 2, len(payload), 0)[:7]
    return head + zlib.crc32(payload, zlib.crc32(head)).to_bytes(4, "little") + payload


# -- the damages: each returns (the file to name, a regex the message must match) ----------


def zero_middle_segment(d: Path) -> tuple[Path, str]:
    seg = live_middle(d)
    seg.write_bytes(b"")
    return seg, r"empty segment \(0 bytes\)"


def zero_last_segment(d: Path) -> tuple[Path, str]:
    seg = segments(d)[-1]
    seg.write_bytes(b"")
    return seg, r"empty segment \(0 bytes\)"


def delete_middle_segment(d: Path) -> tuple[Path, str]:
    seg = live_middle(d)
    after = segments(d)[segments(d).index(seg) + 1]
    seq = int(seg.name.split("-")[1])
    seg.unlink()
    return after, rf"the log resumes at index \d+ after index \d+ \(segment {seq} is missing\)"


def delete_every_segment(d: Path) -> tuple[Path, str]:
    for seg in segments(d):
        seg.unlink()
    return d, r"hard state term 0 is behind the snapshot's term \d+"


def flip_byte_mid_log(d: Path) -> tuple[Path, str]:
    seg = live_middle(d)
    raw = bytearray(seg.read_bytes())
    middle = len(raw) // 2
    raw[middle] ^= 0x40
    seg.write_bytes(bytes(raw))
    at = max(s for s in record_starts(seg) if s <= middle)
    return seg, rf"bad record at offset {at} of {len(raw)} bytes in a segment that is not the last"


def cut_middle_segment_in_half(d: Path) -> tuple[Path, str]:
    seg = live_middle(d)
    starts = record_starts(seg)
    cut = seg.stat().st_size // 2
    if cut in starts:
        cut += 1  # inside a record: the tail is torn, not cleanly cut
    at = max(s for s in starts if s < cut)
    with seg.open("r+b") as f:
        f.truncate(cut)
    return seg, rf"bad record at offset {at} of {cut} bytes in a segment that is not the last"


def hard_state_behind_log(d: Path) -> tuple[Path, str]:
    seg = segments(d)[-1]
    with seg.open("ab") as f:  # an old hard state written last: term and vote go back
        f.write(hard_state_record(term=1, commit=0, vote=""))
    return seg, r"hard state term 1 is behind (the snapshot.s term|entry \d+ of term) [2-9]"


DAMAGES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    f.__name__: f
    for f in (
        zero_middle_segment,
        zero_last_segment,
        delete_middle_segment,
        delete_every_segment,
        flip_byte_mid_log,
        cut_middle_segment_in_half,
        hard_state_behind_log,
    )
}


def digest(d: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(d.iterdir())
        if p.name != "LOCK"
    }


def start_on(root: Path, data: Path) -> tuple[int, str]:
    """Start node n1 of a fresh cluster on ``data``; its exit code and output."""
    c = LocalCluster(root, 3, config=SMALL_STORAGE)
    shutil.copytree(data, root / "n1")
    try:
        c.start_node("n1")
        node = c.nodes["n1"]
        assert node.proc is not None
        code = node.proc.wait(timeout=30)
    finally:
        c.close()
    return code, c.nodes["n1"].log_path.read_text()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damage_is_refused_with_one_line(
    stopped_cluster: Stopped, tmp_path: Path, damage: str
) -> None:
    source = stopped_cluster.cluster.nodes["n2"].data_dir
    damaged = tmp_path / "damaged"
    shutil.copytree(source, damaged)
    culprit, what = DAMAGES[damage](damaged)
    before = digest(damaged)

    doctor = run_registry("doctor", "--data-dir", str(damaged))
    assert doctor.returncode == EXIT_BAD_DATA, doctor.stdout + doctor.stderr
    problems = [line for line in doctor.stdout.splitlines() if line.startswith("problem: ")]
    assert len(problems) >= 1, doctor.stdout
    assert str(culprit) in problems[0] and re.search(what, problems[0]), problems
    assert digest(damaged) == before, "doctor must not change the data directory"

    code, output = start_on(tmp_path / "node", damaged)
    assert code == EXIT_BAD_DATA, output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    assert culprit.name in errors[0] and re.search(what, errors[0]), errors[0]
    assert RECOVERY in errors[0] and "re-add it with an empty data directory" in errors[0]
    assert "Traceback" not in output, output


def test_doctor_on_a_healthy_dir(stopped_cluster: Stopped, tmp_path: Path) -> None:
    copy = tmp_path / "healthy"
    shutil.copytree(stopped_cluster.cluster.nodes["n3"].data_dir, copy)
    before = digest(copy)
    doctor = run_registry("doctor", "--data-dir", str(copy))
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    lines = doctor.stdout.splitlines()
    assert f"names: {len(stopped_cluster.names)}" in lines, doctor.stdout
    [term] = [int(line.split()[1]) for line in lines if line.startswith("term: ")]
    assert term >= stopped_cluster.term >= 2  # a graceful stop may hand leadership on
    assert lines[-1] == "healthy" and not any(line.startswith("problem") for line in lines)
    assert digest(copy) == before
