"""Node configuration: one frozen dataclass, loadable from TOML and overridable by flags.

Example ``node.toml``::

    id = "n1"
    listen = "127.0.0.1:7400"        # gRPC: clients
    peer_listen = "127.0.0.1:8400"   # gRPC: peers only (default: listen's port + 1000)
    cluster_id = "prod-eu-1"         # all nodes of one cluster give the same (see below)
    peer_ca = "/etc/registry/tls/ca.pem"        # peer mTLS (registry certs init|issue)
    peer_cert = "/etc/registry/tls/n1.pem"
    peer_key = "/etc/registry/tls/n1-key.pem"
    http = "127.0.0.1:9400"          # status page (/), /status, /metrics, /healthz, /readyz
    data_dir = "/var/lib/registry/n1"
    preset = "lan"                   # local | lan | wan
    roles = ["web"]
    worker_modules = ["registry.examples"]

    [peers]                          # the bootstrap voters, this node included
    n1 = "127.0.0.1:7400"            # client address; the peer port is +1000, or
                                     # "127.0.0.1:7400/127.0.0.1:8400" names it
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

or on EC2, the running instances with a tag (``registry/node/discovery_ec2.py``)::

    discovery = "ec2"
    ec2_tag = "registry-cluster=prod"   # ids: the registry-node-id tag, else instance ids
    expect = 3
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from registry.core.errors import ConfigError
from registry.core.timing import Timing, preset
from registry.node import config_values
from registry.tracing import check_setting

MAX_PAYLOAD_BYTES = 4 << 20
PEER_MESSAGE_LIMIT = 64 << 20
"""The gRPC message limit of peer and client channels (``node/transport.py``); the entry
and batch caps must stay well under it (at most half)."""
DEFAULT_GRPC_PORT = 7400
"""The port ``listen`` defaults to; ``registry dev`` and deploy/ use it too."""
DEFAULT_HTTP_PORT = 9400
"""The conventional HTTP port (``registry dev``, deploy/); ``http`` itself defaults to off."""
DISCOVERY_MODES = ("static", "dns", "ec2")
AUTH_MODES = ("off", "tokens", "mtls")
PEER_PORT_OFFSET = 1000
"""A node's peer port is its client port plus this, unless configured (``peer_listen``,
or ``client/peer`` in ``peers``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    id: str
    """This node's id; must be a key of ``peers`` when it is a bootstrap voter."""
    listen: str = f"127.0.0.1:{DEFAULT_GRPC_PORT}"
    """gRPC address (host:port) for clients (peers use ``peer_listen``). Default
    127.0.0.1:7400."""
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
    """Bootstrap voters, ``id -> client gRPC address``, this node included (in a file or
    ``--peers``, a value ``client/peer`` also names the peer port; see ``peer_addresses``)."""
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
    ec2_tag: str = ""
    """EC2 discovery: ``key=value``; the running instances with this tag are the voters
    (``registry/node/discovery_ec2.py``; needs the ``ec2`` extra, boto3)."""
    ec2_region: str = ""
    """EC2 discovery: the region to ask. Default: boto3's (``AWS_REGION``, the profile)."""
    ec2_id_tag: str = ""
    """EC2 discovery: the tag whose value is an instance's node id; without it, the
    instance id. Default ``registry-node-id``."""
    ec2_port: int = DEFAULT_GRPC_PORT
    """EC2 discovery: the client gRPC port of every instance (peer port: + 1000). Default 7400."""
    ec2_endpoint: str = ""
    """EC2 discovery: the EC2 API URL (a VPC endpoint, or a test server). Default: AWS's."""
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
    """Largest call/cast payload (and Register ``args``) accepted, bytes; ``args`` are
    bounded further by ``max_entry_bytes``. Default 4 MiB."""
    max_state_bytes: int = 1 << 20
    """Largest handoff state carried to the next owner, bytes. Default 1 MiB."""
    max_entry_bytes: int = 2 << 20
    """Largest log entry a client request may produce, bytes as encoded (``args`` count
    4/3: base64; a ``RegisterMany`` counts all its specs). Larger requests are refused
    before anything is proposed: RESOURCE_EXHAUSTED, reason ``ENTRY_TOO_LARGE``; so
    ``args`` stay under about 1.5 MiB, like etcd's ``--max-request-bytes``. At most half
    the 64 MiB peer message limit. Default 2 MiB: every node encodes, stores and decodes
    an entry on its event loop (about 30 ms per MB on a loaded 2-core host), and an
    8 MiB entry was seen to cost an election with the ``lan`` preset."""
    max_append_bytes: int = 4 << 20
    """Replication batches: at most this many bytes of entries in one APPEND (Raft's
    ``max_bytes_per_msg``; a larger entry travels alone). At most half the peer message
    limit. Default 4 MiB."""
    mailbox_limit: int = 256
    """Messages (calls and casts) queued for one activation; one more is refused:
    RESOURCE_EXHAUSTED, reason ``MAILBOX_FULL``. Default 256."""
    mailbox_bytes: int = 64 << 20
    """Payload bytes queued for one activation; a message that would pass it is
    refused the same way. Default 64 MiB."""
    max_concurrent_rpcs: int = 1024
    """Client RPCs (Watch streams excluded) running at once on this node; one more is
    refused: RESOURCE_EXHAUSTED, reason ``TOO_MANY_RPCS``. Default 1024."""
    max_watch_streams: int = 256
    """Watch streams open at once on this node; one more is refused:
    RESOURCE_EXHAUSTED, reason ``TOO_MANY_WATCHES``. Default 256."""
    max_rpcs_per_client: int = 256
    """Client RPCs (Watch included) one client identity (its token or certificate; with
    ``auth = "off"``, its peer address) may run at once on this node; one more is
    refused: RESOURCE_EXHAUSTED, reason ``TOO_MANY_RPCS``. Default 256."""
    max_fanout_bytes: int = 32 << 20
    """``Publish``/``MultiCall``: group size × payload bytes (a payload counts at
    least 1 KiB) one request may fan out; more is refused: RESOURCE_EXHAUSTED, reason
    ``FANOUT_TOO_LARGE``. Default 32 MiB (8 members at the 4 MiB payload limit)."""
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
    peer_listen: str = ""
    """gRPC address (host:port) of the peer port, which carries only node-to-node traffic
    (Raft, member heartbeats). Default: ``listen``'s host with this node's peer port from
    ``peers`` (``client/peer``), else with ``listen``'s port + 1000."""
    peer_addresses: dict[str, str] = field(default_factory=dict)
    """Peer ports of the ``peers`` given as ``client/peer`` (``n1 = "h:7400/h:8400"``);
    the others are their client port + 1000."""
    peer_ca: str = ""
    """PEM file of the cluster CA that signed every node's certificate (peer mTLS)."""
    peer_cert: str = ""
    """PEM file of this node's certificate; its CN/SAN is this node's id."""
    peer_key: str = ""
    """PEM file of this node's private key."""
    insecure_peers: bool = False
    """Allow plaintext, unauthenticated peer traffic on a non-loopback ``peer_listen``
    (never in production: anyone who reaches the port can rewrite the cluster)."""
    client_cert: str = ""
    """PEM certificate the client port presents (client TLS on when set, with
    ``client_key``). Issue it from the cluster CA (``registry certs issue <id> --san
    <host>`` naming every host/IP clients dial): nodes forwarding a request to another's
    client port verify it against ``peer_ca`` by node id, presenting their peer
    certificate. The peer certificate itself may be reused when it carries those SANs.
    Default: none (plaintext client port)."""
    client_key: str = ""
    """PEM private key of ``client_cert``."""
    client_ca: str = ""
    """PEM CA bundle that client certificates must chain to; when set, the client port
    requires one (mTLS). Must include the cluster CA (``peer_ca``), since forwarding nodes
    present their peer certificate. Default: none (no client certificate asked)."""
    auth: str = "off"
    """Client authentication: ``off`` (anyone reaching the client port may do anything;
    only on a loopback ``listen`` unless ``insecure_clients``), ``tokens`` (bearer
    tokens from ``token_file``) or ``mtls`` (client certificates, ``client_ca``; the CN
    is looked up in ``token_file``). See ``registry/node/auth/``. Default off."""
    token_file: str = ""
    """TOML file of roles and tokens (``registry/node/auth/policy.py``; entries from
    ``registry auth hash-token``); re-read on SIGHUP. Needed unless ``auth = "off"``."""
    insecure_clients: bool = False
    """Allow ``auth = "off"`` on a non-loopback ``listen`` (anyone who reaches the port
    can register, unregister and call anything)."""
    cluster_id: str = ""
    """The cluster this node belongs to (like etcd's ``--initial-cluster-token``); peers
    of another cluster are refused. Persisted in the data directory on first start; a
    different value later is an error (exit 2). Default: the persisted one, else
    ``peers-`` and 12 hex digits of a hash of the sorted bootstrap ``peers``."""

    @property
    def client_tls(self) -> bool:
        return bool(self.client_cert and self.client_key)

    @property
    def peer_tls(self) -> bool:
        return bool(self.peer_ca and self.peer_cert and self.peer_key)

    @property
    def peer_bind(self) -> str:
        """The address the peer server listens on: ``peer_listen``, else ``listen``'s host
        with the peer port ``peers`` gives this node (``client/peer``), or its port + 1000."""
        if self.peer_listen:
            return self.peer_listen
        mine = self.peer_addresses.get(self.id)
        if mine:
            return f"{self.listen.rpartition(':')[0]}:{mine.rpartition(':')[2]}"
        return derive_peer_address(self.listen)

    def peer_address(self, node: str) -> str | None:
        """Where to reach ``node``'s peer port, if it is a configured peer."""
        if node in self.peer_addresses:
            return self.peer_addresses[node]
        client = self.peers.get(node)
        return derive_peer_address(client) if client else None

    tracing: str = ""
    """OpenTelemetry spans of client requests (``registry/tracing.py``; needs the extra
    ``quorum-registry[otel]``): ``""`` (off), ``"console"``, ``"otlp"`` (the standard
    ``OTEL_EXPORTER_OTLP_*`` variables say where; needs ``opentelemetry-exporter-otlp``)
    or ``"jsonl:PATH"`` (one JSON object per span appended to PATH). Default off."""

    workers: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    """Worker host processes that run this node's activations (names are spread over
    them by a hash of the name). Default: the number of CPUs, at least 1."""

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
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            problems.append(f"workers must be a whole number ≥ 1 (got {self.workers!r})")
        if self.max_payload_bytes < 1 or self.max_state_bytes < 0:
            problems.append("payload and state limits must be positive")
        problems.extend(self._limit_problems())
        if self.storage_reserve_bytes < 0 or self.segment_bytes < 1 or self.snapshot_entries < 1:
            problems.append(
                "storage_reserve_bytes must be ≥ 0, segment_bytes and snapshot_entries ≥ 1"
            )
        tracing_problem = check_setting(self.tracing)
        if tracing_problem:
            problems.append(tracing_problem)
        if not self.healthz_stall_s > 0:
            problems.append(f"healthz_stall_s must be > 0 s (got {self.healthz_stall_s})")
        problems.extend(self._peer_problems())
        problems.extend(self._discovery_problems())
        if problems:
            raise ConfigError("invalid node config: " + "; ".join(problems))
        self.timing.validate()
        return self

    def _limit_problems(self) -> list[str]:
        problems = []
        for name in ("max_entry_bytes", "max_append_bytes"):
            value = getattr(self, name)
            if not 0 < value <= PEER_MESSAGE_LIMIT // 2:
                problems.append(
                    f"{name} must be in (0, {PEER_MESSAGE_LIMIT // 2}] bytes, half the peer "
                    f"message limit (got {value})"
                )
        for name in (
            "mailbox_limit",
            "mailbox_bytes",
            "max_concurrent_rpcs",
            "max_watch_streams",
            "max_rpcs_per_client",
            "max_fanout_bytes",
        ):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be ≥ 1 (got {getattr(self, name)})")
        return problems

    def _auth_problems(self) -> list[str]:
        if self.auth not in AUTH_MODES:
            return [f"auth must be one of {', '.join(AUTH_MODES)} (got {self.auth!r})"]
        if self.auth == "off":
            if not self.insecure_clients and not _is_loopback(self.listen):
                return [
                    f"listen {self.listen} is not a loopback address and auth is off: set "
                    'auth = "tokens" (or "mtls") with a token_file, or --insecure-clients'
                ]
            return []
        problems = []
        if not self.token_file:
            problems.append(f'auth = "{self.auth}" needs token_file (roles and tokens)')
        if self.auth == "mtls" and not self.client_ca:
            problems.append('auth = "mtls" needs client_ca (and client_cert/client_key)')
        if self.auth == "tokens" and not self.client_tls and not _is_loopback(self.listen):
            problems.append(
                f"listen {self.listen} is not a loopback address: bearer tokens need client "
                "TLS (client_cert/client_key), or they cross the network in the clear"
            )
        return problems

    def _client_tls_problems(self) -> list[str]:
        if bool(self.client_cert) != bool(self.client_key):
            return ["client TLS needs both client_cert and client_key"]
        if self.client_ca and not self.client_tls:
            return ["client_ca (client certificates) needs client_cert and client_key"]
        if self.client_tls and not self.peer_tls:
            return [
                "client TLS needs peer TLS too (peer_ca/peer_cert/peer_key): nodes forward "
                "requests to each other's client port with their peer certificate"
            ]
        return []

    def _peer_problems(self) -> list[str]:
        problems = []
        bind = self.peer_bind
        if not _is_host_port(bind):
            problems.append(f"peer_listen must look like host:port (got {bind!r}); set it")
        for peer in sorted(self.peers):
            address = self.peer_address(peer) or ""
            if not _is_host_port(address):
                problems.append(
                    f"peer {peer}'s peer address must look like host:port (got {address!r}); "
                    "give it as client/peer"
                )
        problems.extend(self._client_tls_problems())
        problems.extend(self._auth_problems())
        given = [name for name in ("peer_ca", "peer_cert", "peer_key") if getattr(self, name)]
        if given and len(given) < 3:
            problems.append(f"peer TLS needs peer_ca, peer_cert and peer_key (got {given})")
        if not self.peer_tls and not self.insecure_peers and not _is_loopback(bind):
            problems.append(
                f"peer_listen {bind} is not a loopback address and peer TLS is off: give "
                "peer_ca/peer_cert/peer_key (see `registry certs`), or --insecure-peers"
            )
        if self.cluster_id and not valid_cluster_id(self.cluster_id):
            problems.append(
                "cluster_id must be 1-64 letters, digits, '.', '_' or '-' "
                f"(got {self.cluster_id!r})"
            )
        return problems

    def _discovery_problems(self) -> list[str]:
        if self.discovery not in DISCOVERY_MODES:
            return [
                f"discovery must be one of {', '.join(DISCOVERY_MODES)} (got {self.discovery!r})"
            ]
        if self.discovery == "ec2":
            key, sep, value = self.ec2_tag.partition("=")
            if not (key and sep and value):
                return [f"discovery = 'ec2' needs ec2_tag = 'key=value' (got {self.ec2_tag!r})"]
            return [] if 0 < self.ec2_port < 65536 else [f"ec2_port {self.ec2_port} is invalid"]
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


def derive_peer_address(client: str) -> str:
    """``host:port`` → ``host:(port + 1000)`` (the default peer port)."""
    host, _, port = client.rpartition(":")
    if not port.isdigit():
        return client
    return f"{host}:{int(port) + PEER_PORT_OFFSET}"


def _is_loopback(address: str) -> bool:
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def valid_cluster_id(value: str) -> bool:
    return 0 < len(value) <= 64 and all(c.isascii() and (c.isalnum() or c in "._-") for c in value)


def _split_peers(raw: dict[str, Any]) -> None:
    """``peers`` values may be ``client/peer``: the peer part goes to ``peer_addresses``."""
    explicit = dict(raw.get("peer_addresses") or {})
    peers = {}
    for node, value in dict(raw["peers"]).items():
        client, _, peer = str(value).partition("/")
        peers[str(node)] = client
        if peer:
            explicit[str(node)] = peer
    raw["peers"] = peers
    if explicit:
        raw["peer_addresses"] = explicit


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
    if raw.get("peers"):
        _split_peers(raw)  # ``client/peer`` values name a peer port
    timing_overrides = {**config_values.typed_timing(timing_table), **timing_env}
    if raw.get("discovery") in ("dns", "ec2"):
        if raw.get("peers"):
            raise ConfigError(
                f"peers and discovery = {raw['discovery']!r} exclude each other: discovery "
                "finds the peers; drop one of them"
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
