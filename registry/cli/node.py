"""``registry node`` (run one node) and ``registry dev`` (a local cluster, one command)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from registry.core.errors import ConfigError
from registry.core.timing import preset
from registry.node.config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    DISCOVERY_MODES,
    NodeConfig,
    load_from,
)
from registry.node.event_loop import run_loop

DEV_BASE_PORT = DEFAULT_GRPC_PORT
DEV_HTTP_BASE_PORT = DEFAULT_HTTP_PORT


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    node = commands.add_parser(
        "node",
        help="run one registry node",
        description="Run one node from a TOML file and/or flags (flags win). "
        "See registry/node/config.py for every field, its unit and default.",
    )
    node.add_argument("--config", type=Path, help="TOML config file")
    node.add_argument("--id", help="node id, e.g. n1")
    node.add_argument("--listen", help="gRPC host:port (default 127.0.0.1:7400)")
    node.add_argument("--advertise", help="address others should use (default: --listen)")
    node.add_argument(
        "--http",
        help="HTTP host:port for the status page (/), /status, /metrics, /healthz, /readyz "
        "(default: no HTTP server)",
    )
    node.add_argument("--data-dir", help="data directory (default ./data)")
    node.add_argument(
        "--peers",
        help="bootstrap voters by client address: n1=127.0.0.1:7400,n2=127.0.0.1:7401,... "
        "(peer port = client port + 1000; n1=HOST:7400/HOST:8400 names it)",
    )
    node.add_argument(
        "--peer-listen", help="peer-only gRPC host:port (default: --listen's port + 1000)"
    )
    node.add_argument("--peer-ca", help="peer mTLS: the cluster CA (PEM; registry certs init)")
    node.add_argument("--peer-cert", help="peer mTLS: this node's certificate (PEM)")
    node.add_argument("--peer-key", help="peer mTLS: this node's private key (PEM)")
    node.add_argument("--client-cert", help="client TLS: the client port's certificate (PEM)")
    node.add_argument("--client-key", help="client TLS: its private key (PEM)")
    node.add_argument(
        "--client-ca", help="client TLS: require client certificates signed by this CA (PEM)"
    )
    node.add_argument(
        "--auth", choices=("off", "tokens", "mtls"), help="client authentication (default off)"
    )
    node.add_argument("--token-file", help="roles and tokens (TOML); re-read on SIGHUP")
    node.add_argument(
        "--insecure-clients",
        action="store_const",
        const=True,
        help="allow auth off on a non-loopback --listen (anyone reaching it may do anything)",
    )
    node.add_argument(
        "--insecure-peers",
        action="store_const",
        const=True,
        help="allow a non-loopback peer port without TLS (anyone reaching it is a peer)",
    )
    node.add_argument(
        "--cluster-id",
        help="this cluster's id (like etcd's --initial-cluster-token; default: persisted, "
        "else derived from --peers)",
    )
    node.add_argument(
        "--discovery",
        choices=DISCOVERY_MODES,
        help="how the bootstrap voters are found: static (--peers, the default), dns or ec2",
    )
    node.add_argument(
        "--dns-name",
        help="dns discovery: SRV name listing the voters, e.g. "
        "_grpc._tcp.registry.default.svc.cluster.local (node id = a target's first label)",
    )
    node.add_argument(
        "--dns-server",
        help="dns discovery: ip:port of the DNS server to ask (default: the system resolver)",
    )
    node.add_argument(
        "--expect", type=int, help="dns discovery: number of bootstrap voters (default 3)"
    )
    node.add_argument(
        "--discovery-timeout",
        type=float,
        help="dns discovery: seconds to wait for --expect voters (default 120)",
    )
    node.add_argument(
        "--learner",
        action="store_const",
        const=True,
        help="join a running cluster as a learner (not in --peers; `registry member add` it)",
    )
    node.add_argument("--ec2-tag", help="ec2 discovery: key=value; running instances with it")
    node.add_argument("--ec2-region", help="ec2 discovery: region (default: boto3's)")
    node.add_argument(
        "--ec2-id-tag", help="ec2 discovery: tag holding the node id (default registry-node-id)"
    )
    node.add_argument("--ec2-port", type=int, help="ec2 discovery: instances' gRPC port")
    node.add_argument("--ec2-endpoint", help="ec2 discovery: EC2 API URL (default AWS)")
    node.add_argument("--preset", choices=("local", "lan", "wan"), help="timing preset")
    node.add_argument("--roles", help="comma-separated roles this member offers")
    node.add_argument(
        "--worker-module",
        action="append",
        dest="worker_modules",
        help="module with Worker classes (repeatable; default registry.examples)",
    )
    node.add_argument(
        "--workers", type=int, help="worker host processes (default: the number of CPUs)"
    )
    node.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="logging level (default INFO)",
    )
    node.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines (default) or one JSON object per line; both name the node",
    )
    node.add_argument(
        "--tracing",
        help="OpenTelemetry spans: console, otlp or jsonl:PATH (needs quorum-registry[otel])",
    )
    node.add_argument(
        "--check",
        action="store_true",
        help="print the effective configuration (file, flags and defaults) as TOML and exit "
        "(0 if valid, 2 with the problem if not)",
    )
    node.set_defaults(handler=run_node)

    dev = commands.add_parser(
        "dev",
        help="run a local cluster of N nodes with the example workers",
        description="Start N node processes on loopback (gRPC from port 7400, peers from "
        "8400 with mTLS from a throwaway CA in the data dir, HTTP from 9400: status page at "
        "http://127.0.0.1:9400/), wait until a leader is elected and "
        "every node is ready, print how to use it, and stop everything on Ctrl-C or "
        "SIGTERM. A node that exits is restarted.",
    )
    dev.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    dev.add_argument("--base-port", type=int, default=DEV_BASE_PORT, help="first gRPC port")
    dev.add_argument(
        "--http-base-port", type=int, default=DEV_HTTP_BASE_PORT, help="first HTTP port"
    )
    dev.add_argument("--data-dir", type=Path, help="keep data here (default: a temp dir)")
    dev.add_argument("--preset", default="local", choices=("local", "lan", "wan"))
    dev.add_argument("--ready-timeout", type=float, default=20.0, help="seconds to wait")
    dev.add_argument(
        "--worker-module",
        action="append",
        dest="worker_modules",
        default=[],
        help="extra module with Worker classes for every node (repeatable; "
        "registry.examples is always loaded)",
    )
    dev.set_defaults(handler=run_dev)


def node_config(args: argparse.Namespace) -> NodeConfig:
    """The validated config of ``registry node`` (TOML file, then flags on top)."""
    overrides: dict[str, object] = {
        "id": args.id,
        "listen": args.listen,
        "advertise": args.advertise,
        "http": args.http,
        "data_dir": args.data_dir,
        "preset": args.preset,
        "discovery": args.discovery,
        "dns_name": args.dns_name,
        "dns_server": args.dns_server,
        "expect": args.expect,
        "discovery_timeout": args.discovery_timeout,
        "peer_listen": args.peer_listen,
        "peer_ca": args.peer_ca,
        "peer_cert": args.peer_cert,
        "peer_key": args.peer_key,
        "insecure_peers": args.insecure_peers,
        "client_cert": args.client_cert,
        "client_key": args.client_key,
        "client_ca": args.client_ca,
        "auth": args.auth,
        "token_file": args.token_file,
        "insecure_clients": args.insecure_clients,
        "cluster_id": args.cluster_id,
        "workers": args.workers,
        "learner": args.learner,
        "ec2_tag": args.ec2_tag,
        "ec2_region": args.ec2_region,
        "ec2_id_tag": args.ec2_id_tag,
        "ec2_port": args.ec2_port,
        "ec2_endpoint": args.ec2_endpoint,
        "tracing": args.tracing,
    }
    if args.peers:
        try:
            overrides["peers"] = dict(p.split("=", 1) for p in args.peers.split(","))
        except ValueError:
            raise ConfigError(
                f"--peers must look like n1=host:port,... (got {args.peers!r})"
            ) from None
    if args.roles:
        overrides["roles"] = [r for r in args.roles.split(",") if r]
    if args.worker_modules:
        overrides["worker_modules"] = args.worker_modules
    return load_from(args.config, os.environ, overrides)


def effective_toml(cfg: NodeConfig) -> str:
    """``cfg`` as TOML that ``registry node --config`` reads back: every field, defaults
    included, ``[timing]`` as resolved seconds (an unset derived value is left out)."""
    import dataclasses

    lines: list[str] = []
    tables: dict[str, dict[str, object]] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "timing":
            tables["timing"] = dataclasses.asdict(value)
        elif isinstance(value, dict):
            tables[f.name] = value
        else:
            lines.append(f"{f.name} = {_toml_value(value)}")
    for table, values in tables.items():
        lines.append(f"\n[{table}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None)
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


def run_node(args: argparse.Namespace) -> int:

    from registry.node.discovery import DiscoveryFailed, discover
    from registry.node.logs import configure
    from registry.node.server import serve
    from registry.node.storage import DataDirLocked, StorageCorrupt

    async def discover_and_serve(cfg: NodeConfig) -> None:
        await serve(await discover(cfg))

    if args.check:
        try:
            print(effective_toml(node_config(args)), end="")
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    try:
        cfg = node_config(args)
        configure(args.log_level, cfg.id, args.log_format)
        run_loop(discover_and_serve(cfg))
    except (ConfigError, DiscoveryFailed, DataDirLocked, StorageCorrupt, OSError) as exc:
        # One line, no traceback: bad config, a locked or damaged data directory (the
        # message names the file and the recovery), a port in use.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _wait_ready(addresses: list[str], timeout: float) -> str | None:
    """Poll Cluster on every node until one leader is known and all hold a lease."""
    import grpc

    from registry.v1 import registry_pb2, registry_pb2_grpc

    deadline = time.monotonic() + timeout
    channels = [grpc.insecure_channel(a) for a in addresses]
    try:
        while time.monotonic() < deadline:
            try:
                statuses = [
                    registry_pb2_grpc.RegistryStub(c).Cluster(
                        registry_pb2.ClusterRequest(), timeout=1.0
                    )
                    for c in channels
                ]
            except grpc.RpcError:
                time.sleep(0.1)  # a process still starting: poll again, bounded by deadline
                continue
            leaders = {s.leader for s in statuses}
            if len(leaders) == 1 and "" not in leaders and all(s.quorum for s in statuses):
                return str(leaders.pop())
            time.sleep(0.1)
        return None
    finally:
        for channel in channels:
            channel.close()


def _dev_security(root: Path, ids: list[str]) -> tuple[dict[str, list[str]], str]:
    """Peer mTLS flags per node (a throwaway CA in ``<root>/certs``) and the cluster id
    (kept in ``<root>/cluster_id``, so a kept ``--data-dir`` restarts the same cluster)."""
    from registry.node.certs import dev_certs, new_cluster_id, tls_flags

    files = dev_certs(root / "certs", ids)
    path = root / "cluster_id"
    cluster = path.read_text().strip() if path.exists() else ""
    if not cluster:
        cluster = new_cluster_id()
        path.write_text(cluster + "\n")
    return {n: tls_flags(files[n]) for n in ids}, cluster


def run_dev(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 9:
        print("error: --nodes must be between 1 and 9", file=sys.stderr)
        return 2
    started = time.monotonic()
    ids = [f"n{i}" for i in range(1, args.nodes + 1)]
    grpc_addr = {n: f"127.0.0.1:{args.base_port + i}" for i, n in enumerate(ids)}
    http_addr = {n: f"127.0.0.1:{args.http_base_port + i}" for i, n in enumerate(ids)}
    temp = args.data_dir is None
    root = Path(tempfile.mkdtemp(prefix="registry-dev-")) if temp else args.data_dir
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create --data-dir {root}: {exc}", file=sys.stderr)
        return 2
    peers = ",".join(f"{n}={a}" for n, a in grpc_addr.items())
    tls, cluster = _dev_security(root, ids)
    procs: list[subprocess.Popen[bytes]] = []
    stop = {"now": False}

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:

        def spawn(n: str) -> subprocess.Popen[bytes]:
            log_file = open(root / f"{n}.log", "ab")  # noqa: SIM115 (the child owns it)
            return subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "registry.cli",
                    "node",
                    "--id",
                    n,
                    "--listen",
                    grpc_addr[n],
                    "--http",
                    http_addr[n],
                    "--data-dir",
                    str(root / n),
                    "--peers",
                    peers,
                    "--preset",
                    args.preset,
                    "--cluster-id",
                    cluster,
                    *tls[n],
                    "--workers",
                    "1",  # one host per node: a dev cluster starts in a few seconds
                    *(
                        arg
                        for module in ["registry.examples", *args.worker_modules]
                        for arg in ("--worker-module", module)
                    ),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        procs.extend(spawn(n) for n in ids)
        leader = _wait_ready(list(grpc_addr.values()), args.ready_timeout)
        if leader is None:
            print(
                f"error: the cluster was not ready within {args.ready_timeout} s; "
                f"see the logs in {root}",
                file=sys.stderr,
            )
            return 1
        elapsed = time.monotonic() - started
        print(
            f"quorum-registry dev cluster: {args.nodes} nodes, leader {leader}, "
            f"ready in {elapsed:.1f} s (preset {args.preset})"
        )
        for n in ids:
            print(f"  {n}  grpc {grpc_addr[n]}  status page http://{http_addr[n]}/")
        print(f"  data and logs: {root}")
        lease = preset(args.preset).lease
        print(
            f"Preset {args.preset}: a node that cannot renew its {lease:g} s member lease "
            "in time (a busy CPU, a suspended laptop) stops its workers (a fence, counted "
            "in registry_fences_total and shown on the status page) and they fail over to "
            "another node. That is the safety rule working, not a crash; on a busy machine "
            "use --preset lan."
        )
        print(f"Status page: http://{http_addr[ids[0]]}/ (JSON: /status, metrics: /metrics)")
        print("Try, in another shell:")
        print("  registry status")
        print("  registry register visits --kind counter")
        print("  registry call visits incr")
        print("  registry whereis visits")
        print("Ctrl-C stops the cluster.")
        sys.stdout.flush()
        while not stop["now"]:
            # Like systemd or Kubernetes would: a node that dies is started again; it
            # rejoins with a new incarnation.
            for i, p in enumerate(procs):
                code = p.poll()
                if code is not None and not stop["now"]:
                    print(
                        f"{ids[i]} exited with code {code}; restarting it "
                        f"(log: {root / (ids[i] + '.log')})",
                        flush=True,
                    )
                    procs[i] = spawn(ids[i])
            time.sleep(0.2)  # the supervisor loop: waiting for a signal, not a condition
        return 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        if temp:
            shutil.rmtree(root, ignore_errors=True)
        print("cluster stopped.")
