"""Node configuration: one frozen dataclass, loadable from TOML and overridable by flags.

Example ``node.toml``::

    id = "n1"
    listen = "127.0.0.1:7400"        # gRPC: clients and peers
    http = "127.0.0.1:9400"          # /metrics /healthz /readyz /status
    data_dir = "/var/lib/registry/n1"
    preset = "lan"                   # local | lan | wan
    roles = ["web"]
    worker_modules = ["registry.examples"]

    [peers]                          # the bootstrap voters, this node included
    n1 = "127.0.0.1:7400"
    n2 = "127.0.0.1:7401"
    n3 = "127.0.0.1:7402"

    [timing]                         # optional overrides of the preset, in seconds
    lease = 1.0
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from registry.core.errors import ConfigError
from registry.core.timing import Timing, preset

MAX_PAYLOAD_BYTES = 4 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    id: str
    """This node's id; must be a key of ``peers`` when it is a bootstrap voter."""
    listen: str = "127.0.0.1:7400"
    """gRPC address (host:port) for clients and peers. Default 127.0.0.1:7400."""
    advertise: str = ""
    """Address other nodes and clients should use. Default: ``listen``."""
    http: str = ""
    """HTTP address for /metrics, /healthz, /readyz, /status. Empty: no HTTP server."""
    data_dir: Path = Path("data")
    """Where the log, snapshots and the incarnation live. Default ./data."""
    peers: dict[str, str] = field(default_factory=dict)
    """Bootstrap voters, ``id -> gRPC address``, this node included."""
    learner: bool = False
    """Join as a non-voting member (a learner) rather than a bootstrap voter."""
    roles: tuple[str, ...] = ()
    """Roles this member offers (names with a role constraint only land on matching
    members). Default none."""
    worker_modules: tuple[str, ...] = ("registry.examples",)
    """Python modules whose ``Worker`` subclasses this node can run, found by ``kind``."""
    preset: str = "lan"
    """Timing preset: ``local``, ``lan`` or ``wan``."""
    timing: Timing = field(default_factory=Timing)
    """Resolved timing (the preset with any ``[timing]`` overrides)."""
    max_payload_bytes: int = MAX_PAYLOAD_BYTES
    """Largest call/cast payload accepted, bytes. Default 4 MiB."""
    max_state_bytes: int = 1 << 20
    """Largest handoff state carried to the next owner, bytes. Default 1 MiB."""
    fsync: bool = True
    """fsync the log before acknowledging anything. Only tests may turn this off."""

    @property
    def address(self) -> str:
        return self.advertise or self.listen

    def validate(self) -> NodeConfig:
        problems: list[str] = []
        if not self.id:
            problems.append("id must not be empty")
        for name in ("listen", "advertise", "http"):
            value = getattr(self, name)
            if value and not _is_host_port(value):
                problems.append(f"{name} must look like host:port (got {value!r})")
        if not self.learner and self.peers and self.id not in self.peers:
            problems.append(
                f"node {self.id!r} is not among the bootstrap peers {sorted(self.peers)}; "
                "add it, or start it with learner = true"
            )
        if self.learner and not self.peers:
            problems.append("a learner needs peers to join")
        for peer, address in sorted(self.peers.items()):
            if not _is_host_port(address):
                problems.append(f"peer {peer} address must look like host:port (got {address!r})")
        if self.max_payload_bytes < 1 or self.max_state_bytes < 0:
            problems.append("payload and state limits must be positive")
        if problems:
            raise ConfigError("invalid node config: " + "; ".join(problems))
        self.timing.validate()
        return self


def _is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def load(path: Path | None, **overrides: Any) -> NodeConfig:
    """Read ``path`` (TOML) if given, apply non-``None`` ``overrides``, validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    raw.update({k: v for k, v in overrides.items() if v is not None})
    timing_overrides = raw.pop("timing", {}) or {}
    known = {f.name for f in fields(NodeConfig)} - {"timing"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    if "id" not in raw:
        raise ConfigError('the node id is required (id = "n1" in the file, or --id)')
    preset_name = str(raw.get("preset", "lan"))
    timing = preset(preset_name, **timing_overrides)
    values: dict[str, Any] = {"timing": timing}
    for key, value in raw.items():
        if key in ("roles", "worker_modules"):
            value = tuple(str(v) for v in value)
        elif key == "data_dir":
            value = Path(value)
        elif key == "peers":
            value = {str(k): str(v) for k, v in dict(value).items()}
        values[key] = value
    return replace(NodeConfig(id=str(raw["id"])), **values).validate()
