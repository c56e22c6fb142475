"""Node configuration: one frozen dataclass, loadable from TOML and overridable by flags.

Example ``node.toml``::

    id = "n1"
    listen = "127.0.0.1:7400"        # gRPC: clients and peers
    http = "127.0.0.1:9400"          # status page (/), /status, /metrics, /healthz, /readyz
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

Every field can also come from an environment variable ``REGISTRY_<FIELD>``
(``REGISTRY_TIMING_<FIELD>`` for ``[timing]``); values are strictly typed, and sizes take
units ("4MiB"): see ``registry/node/config_values.py``. The file comes first, then the
environment, then flags.

Instead of ``[peers]``, the bootstrap voters can be found in DNS (see
``registry/node/discovery.py``; ``id`` then defaults to the host name's first label)::

    discovery = "dns"
    dns_name = "_grpc._tcp.registry.default.svc.cluster.local"   # SRV records
    expect = 3
"""

from __future__ import annotations

import ipaddress
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from registry.core.errors import ConfigError
from registry.core.timing import Timing, preset
from registry.node import config_values

MAX_PAYLOAD_BYTES = 4 << 20
DEFAULT_GRPC_PORT = 7400
"""The port ``listen`` defaults to; ``registry dev`` and deploy/ use it too."""
DEFAULT_HTTP_PORT = 9400
"""The conventional HTTP port (``registry dev``, deploy/); ``http`` itself defaults to off."""
DISCOVERY_MODES = ("static", "dns")


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    id: str
    """This node's id; must be a key of ``peers`` when it is a bootstrap voter."""
    listen: str = f"127.0.0.1:{DEFAULT_GRPC_PORT}"
    """gRPC address (host:port) for clients and peers. Default 127.0.0.1:7400."""
    advertise: str = ""
    """Address other nodes and clients should use. Default: ``listen`` (with DNS
    discovery: the address DNS gives for this node)."""
    http: str = ""
    """HTTP address (host:port) for the status page (``/``, ``/status.html``), the status
    JSON (``/status``, ``/status/names?q=&limit=&offset=``, ``/status/events``),
    ``/metrics``, ``/healthz`` and ``/readyz``. Empty (default): no HTTP server."""
    data_dir: Path = Path("data")
    """Where the log, snapshots and the incarnation live. Default ./data."""
    peers: dict[str, str] = field(default_factory=dict)
    """Bootstrap voters, ``id -> gRPC address``, this node included."""
    discovery: str = "static"
    """How the bootstrap voters are found: ``static`` (``peers`` as given) or ``dns``
    (SRV records of ``dns_name``, resolved at startup). Default static."""
    dns_name: str = ""
    """DNS discovery: a fully qualified SRV name (``_service._proto.domain``) whose
    targets are the voters; a target's first label is the node id (a StatefulSet pod
    name), its port the gRPC port. A records alone cannot name nodes, so SRV is required."""
    dns_server: str = ""
    """DNS discovery: ``ip:port`` of the DNS server to ask. Empty (default): the system
    resolver. With a server given, peer addresses are the targets' A records (that server's
    names are unknown to gRPC's own resolver); without, they are the target names, which
    stay valid when a pod comes back with a new IP."""
    expect: int = 3
    """DNS discovery: how many voters (this node included) the SRV name must list before
    the node starts. Default 3."""
    discovery_timeout: float = 120.0
    """DNS discovery: give up (exit 2) after this many seconds without ``expect`` voters.
    Default 120."""
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
    storage_reserve_bytes: int = 64 << 20
    """Free space kept on the data directory's file system, bytes. Below it the node
    raises the storage alarm: client writes are refused (RESOURCE_EXHAUSTED, reason
    NOSPACE) and a leader hands leadership over (``registry/node/disk_alarm.py``).
    Default 64 MiB; 0 turns the alarm off."""
    segment_bytes: int = 64 << 20
    """Size at which a log segment is closed and a new one started, bytes. Default 64 MiB."""
    snapshot_entries: int = 1024
    """Applied entries (at least as many as names) between snapshots. Default 1024."""
    healthz_stall_s: float = 5.0
    """``/healthz`` answers 503 once the core loop has not turned for this long, seconds
    (a hung disk, a blocked event loop). Default 5."""

    @property
    def address(self) -> str:
        return self.advertise or self.listen

    @property
    def drain_timeout(self) -> float:
        """Longest a graceful stop (SIGTERM) waits for this node's names to be handed off,
        seconds: ``handoff_deadline + 5·lease`` (7 s with ``lan``). A leadership transfer
        (up to ``4·election_timeout``) follows; supervisors must allow for both."""
        return self.timing.handoff_deadline + 5 * self.timing.lease

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
        if self.learner and not self.peers and self.discovery == "static":
            problems.append("a learner needs peers to join")
        for peer, address in sorted(self.peers.items()):
            if not _is_host_port(address):
                problems.append(f"peer {peer} address must look like host:port (got {address!r})")
        if self.max_payload_bytes < 1 or self.max_state_bytes < 0:
            problems.append("payload and state limits must be positive")
        if self.storage_reserve_bytes < 0 or self.segment_bytes < 1 or self.snapshot_entries < 1:
            problems.append(
                "storage_reserve_bytes must be ≥ 0, segment_bytes and snapshot_entries ≥ 1"
            )
        if not self.healthz_stall_s > 0:
            problems.append(f"healthz_stall_s must be > 0 s (got {self.healthz_stall_s})")
        problems.extend(self._discovery_problems())
        if problems:
            raise ConfigError("invalid node config: " + "; ".join(problems))
        self.timing.validate()
        return self

    def _discovery_problems(self) -> list[str]:
        if self.discovery not in DISCOVERY_MODES:
            return [
                f"discovery must be one of {', '.join(DISCOVERY_MODES)} (got {self.discovery!r})"
            ]
        if self.discovery == "static":
            stray = [name for name in ("dns_name", "dns_server") if getattr(self, name)]
            if stray:
                return [
                    f"{' and '.join(stray)} set, but discovery is 'static'; add discovery = 'dns'"
                ]
            return []
        problems = []
        if not self.dns_name:
            problems.append(
                "discovery = 'dns' needs dns_name, an SRV name such as "
                "_grpc._tcp.registry.default.svc.cluster.local"
            )
        elif not is_srv_name(self.dns_name):
            problems.append(
                f"dns_name must be an SRV name, _service._proto.domain (got {self.dns_name!r}): "
                "node ids are taken from SRV targets; an A record gives only addresses"
            )
        if self.dns_server and not _is_ip_port(self.dns_server):
            problems.append(
                f"dns_server must look like ip:port, e.g. 127.0.0.1:53 (got {self.dns_server!r})"
            )
        if self.expect < 1:
            problems.append(f"expect must be at least 1 (got {self.expect})")
        if not self.discovery_timeout > 0:
            problems.append(f"discovery_timeout must be > 0 s (got {self.discovery_timeout})")
        return problems


def is_srv_name(name: str) -> bool:
    """``_service._proto.domain`` (RFC 2782), with or without the final dot."""
    labels = name.rstrip(".").split(".")
    return (
        len(labels) >= 3
        and all(len(label) > 1 for label in labels[:2])
        and all(label.startswith("_") for label in labels[:2])
        and all(labels)
    )


def _is_ip_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return bool(sep and port.isdigit() and 0 < int(port) < 65536)


def _is_host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


def load(path: Path | None, **overrides: Any) -> NodeConfig:
    """Read ``path`` (TOML) if given, apply non-``None`` ``overrides``, validate."""
    return load_from(path, {}, overrides)


def load_from(
    path: Path | None, environ: Mapping[str, str], overrides: Mapping[str, Any]
) -> NodeConfig:
    """Read ``path`` (TOML) if given, then the ``REGISTRY_*`` variables of ``environ``
    (the CLI passes ``os.environ``), then non-``None`` ``overrides``; check every value's
    type (naming the field) and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    timing_table = raw.pop("timing", {}) or {}
    if not isinstance(timing_table, dict):
        raise ConfigError(f"timing must be a table of seconds (got {timing_table!r})")
    known = {f.name for f in fields(NodeConfig)} - {"timing"}
    unknown = sorted((set(raw) | {k for k, v in overrides.items() if v is not None}) - known)
    if unknown:
        raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
    kinds = config_values.kinds(NodeConfig)
    from_env, timing_env = config_values.from_environment(environ, kinds)
    raw = {k: config_values.typed(k, kinds[k], v) for k, v in raw.items()}
    raw.update(from_env)
    raw.update(
        {k: config_values.typed(k, kinds[k], v) for k, v in overrides.items() if v is not None}
    )
    timing_overrides = {**config_values.typed_timing(timing_table), **timing_env}
    if raw.get("discovery") == "dns":
        if raw.get("peers"):
            raise ConfigError(
                "peers and discovery = 'dns' exclude each other: DNS discovery finds the "
                "peers; drop one of them"
            )
        # A StatefulSet pod's host name is its name, which is also its SRV target's label.
        raw.setdefault("id", socket.gethostname().split(".")[0])
    if "id" not in raw:
        raise ConfigError('the node id is required (id = "n1" in the file, or --id)')
    preset_name = str(raw.get("preset", "lan"))
    timing = preset(preset_name, **timing_overrides)
    values: dict[str, Any] = {"timing": timing}
    values.update(raw)
    return replace(NodeConfig(id=str(raw["id"])), **values).validate()
