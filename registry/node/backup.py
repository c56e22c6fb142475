"""Backups: ``registry snapshot save`` (a consistent snapshot from the leader) and
``registry snapshot restore`` (a new cluster from it, like ``etcdutl snapshot restore``).

Rules:

1. **Consistent.** The leader takes a ReadIndex (it is still the leader and has applied
   everything acknowledged before the request), then copies its registry state between
   two Readies: the file holds exactly the state at one applied index.
2. **Checked.** The file is one JSON header line (format, version, index, term, source
   cluster id, names, the SHA-256 and length of the body) and the body (the state
   machine's own snapshot encoding). The stream's last chunk carries the SHA-256 of the
   whole file; save verifies it before renaming the file into place, and restore refuses
   a file whose body does not match its header.
3. **A new cluster.** Restore writes an *empty* data directory whose Raft snapshot is the
   saved state at the saved index and term, with the voters of ``--peers``, and a new
   cluster id (given, else derived from the file's checksum and the peers, so every node
   restored from one file with the same peers agrees without coordination). The old
   membership is forgotten — the old members' incarnations and retired ids mean nothing
   in the new cluster — so every name waits for a member and starts again (reason
   ``FAILOVER``, no state) on the new nodes; its next fencing token is above every token
   in the file, since the log continues from the saved index.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

from registry.core.controls import CaptureState
from registry.core.errors import ConfigError
from registry.core.messages import ConfState, HardState, Ready, Snapshot, SnapshotMeta
from registry.core.state import RegistryState
from registry.v1 import admin_pb2 as apb
from registry.v1 import admin_pb2_grpc

if TYPE_CHECKING:
    from registry.node.admin import AdminService

FORMAT = "quorum-registry-snapshot"
VERSION = 1
CHUNK_BYTES = 1 << 20
SAVE_TIMEOUT_S = 30.0


class BadSnapshotFile(ConfigError):
    """The file is not a snapshot, is damaged, or does not match its checksum."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFile:
    index: int
    term: int
    cluster_id: str
    names: int
    sha256: str
    """Of the body."""
    body: bytes

    def encode(self) -> bytes:
        header = {
            "format": FORMAT,
            "version": VERSION,
            "index": self.index,
            "term": self.term,
            "cluster_id": self.cluster_id,
            "names": self.names,
            "sha256": self.sha256,
            "bytes": len(self.body),
        }
        return json.dumps(header, sort_keys=True).encode() + b"\n" + self.body

    @staticmethod
    def decode(raw: bytes, where: str) -> SnapshotFile:
        line, sep, body = raw.partition(b"\n")
        try:
            header = json.loads(line) if sep else None
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise BadSnapshotFile(f"{where} is not a quorum-registry snapshot")
        if header.get("version") != VERSION:
            raise BadSnapshotFile(f"{where}: format version {header.get('version')} unknown")
        digest = hashlib.sha256(body).hexdigest()
        if len(body) != header.get("bytes") or digest != header.get("sha256"):
            raise BadSnapshotFile(
                f"{where} is damaged: {len(body)} body bytes with SHA-256 {digest[:16]}…, "
                f"the header says {header.get('bytes')} bytes, {str(header.get('sha256'))[:16]}…"
            )
        return SnapshotFile(
            index=int(header["index"]),
            term=int(header["term"]),
            cluster_id=str(header["cluster_id"]),
            names=int(header["names"]),
            sha256=digest,
            body=body,
        )


async def stream_snapshot(admin: AdminService, context: Any) -> AsyncIterator[apb.SnapshotChunk]:
    """Rule 1 on the leader (a follower relays the leader's stream)."""
    driver = admin.replicated
    if driver.view.leader != admin.node_id:
        async for chunk in _relay(admin):
            yield chunk
        return
    index = await asyncio.wait_for(driver.read_index(), SAVE_TIMEOUT_S)
    await driver.wait_applied(index, SAVE_TIMEOUT_S)

    captured = await admin._on_core(CaptureState())
    data = SnapshotFile(
        index=captured.index,
        term=captured.term,
        cluster_id=admin.cluster_id,
        names=captured.names,
        sha256=hashlib.sha256(captured.data).hexdigest(),
        body=captured.data,
    ).encode()
    snap = SnapshotFile.decode(data, "the snapshot just taken")
    for start in range(0, len(data), CHUNK_BYTES):
        last = start + CHUNK_BYTES >= len(data)
        yield apb.SnapshotChunk(
            data=data[start : start + CHUNK_BYTES],
            done=last,
            index=snap.index,
            term=snap.term,
            sha256=hashlib.sha256(data).hexdigest() if last else "",
        )


async def _relay(admin: AdminService) -> AsyncIterator[apb.SnapshotChunk]:
    leader = admin.replicated.view.leader
    address = admin.directory.address_of(leader) if leader else None
    if address is None:
        from registry.node.status import Abort

        raise Abort(grpc.StatusCode.UNAVAILABLE, admin.health.no_quorum_message())
    from registry.node.transport import CHANNEL_OPTIONS

    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        async for chunk in admin_pb2_grpc.AdminStub(channel).SnapshotSave(
            apb.SnapshotSaveRequest()
        ):
            yield chunk


def write_verified(chunks: list[apb.SnapshotChunk], path: Path) -> SnapshotFile:
    """Rule 2 on the saving side: check the stream's checksum, then rename into place."""
    data = b"".join(c.data for c in chunks)
    if not chunks or not chunks[-1].done:
        raise BadSnapshotFile("the snapshot stream ended early")
    if hashlib.sha256(data).hexdigest() != chunks[-1].sha256:
        raise BadSnapshotFile("the snapshot stream does not match its checksum")
    snap = SnapshotFile.decode(data, "the received snapshot")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return snap


def restore(
    path: Path, data_dir: Path, peers: dict[str, str], cluster_id: str = ""
) -> tuple[SnapshotFile, str]:
    """Rule 3: a data directory for one node of the new cluster; the cluster id."""
    from registry.node import cluster_id as cluster_ids
    from registry.node.config import valid_cluster_id
    from registry.node.storage import FileStorage

    snap = SnapshotFile.decode(path.read_bytes(), str(path))
    if not peers:
        raise ConfigError("--peers names the voters of the new cluster; it is required")
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ConfigError(f"{data_dir} is not empty: restore only into a new data directory")
    chosen = cluster_id or derived_cluster_id(snap, peers)
    if not valid_cluster_id(chosen):
        raise ConfigError(f"cluster id {chosen!r} is not valid")
    state = RegistryState.restore(snap.body)
    state.forget_members(snap.index)
    conf = ConfState(voters=frozenset(peers))
    snapshot = Snapshot(
        meta=SnapshotMeta(index=snap.index, term=snap.term, conf=conf), data=state.snapshot()
    )
    with FileStorage(data_dir) as storage:
        storage.load()
        hard = HardState(term=snap.term, commit=snap.index)
        storage.persist(
            incarnation=None, ready=Ready(snapshot=snapshot, hard_state=hard), compaction=None
        )
    cluster_ids.resolve(data_dir, chosen, peers)
    return snap, chosen


def derived_cluster_id(snap: SnapshotFile, peers: dict[str, str]) -> str:
    seed = snap.sha256 + "|" + ",".join(sorted(peers))
    return "restored-" + hashlib.sha256(seed.encode()).hexdigest()[:12]
