"""The cluster id: which cluster a node belongs to, fixed at its first start.

Rules:

- Given (``cluster_id``, like etcd's ``--initial-cluster-token``) or, if not, the one
  persisted in the data directory, or else the default: ``peers-`` and 12 hex digits of
  SHA-256 over the sorted ``id=client address`` list of the bootstrap peers (nodes that
  share a peer list agree without being told; another cluster's list differs).
- Written to ``<data_dir>/cluster_id`` on the first start (atomically, fsync'd) and never
  changed: a node restarted with a different ``cluster_id`` refuses to start (exit 2),
  because its log belongs to the other cluster.
- Peers send it with every stream and compare it both ways (``registry.node.transport``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from registry.core.errors import ConfigError

FILE = "cluster_id"


def default_cluster_id(peers: dict[str, str]) -> str:
    text = ",".join(f"{node}={peers[node]}" for node in sorted(peers))
    return "peers-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def resolve(data_dir: Path, configured: str, peers: dict[str, str]) -> str:
    """The id this node runs with; persists it on the first start. ``ConfigError`` when
    ``configured`` contradicts the persisted one."""
    path = data_dir / FILE
    try:
        persisted = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        persisted = ""
    if configured and persisted and configured != persisted:
        raise ConfigError(
            f"cluster_id {configured!r} does not match {persisted!r} persisted in {path}: "
            "this data directory belongs to another cluster"
        )
    chosen = configured or persisted or default_cluster_id(peers)
    if not persisted:
        _write_durably(path, chosen)
    return chosen


def _write_durably(path: Path, value: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(value + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
