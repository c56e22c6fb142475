"""deploy/ stays consistent with the code: every command line in Compose, Kubernetes and
systemd is parsed by the real ``registry node`` parser and validated by the real config
loader; ports, probes, grace periods and labels agree with each other and with the node's
defaults. Nothing here runs Docker or a cluster; ``promtool`` checks the Prometheus
config when it is installed (it must be under CI)."""

from __future__ import annotations

import argparse
import configparser
import json
import re
import shlex
import subprocess
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from registry.cli import build_parser
from registry.cli.node import node_config
from registry.node.auth.policy import TokenFile
from registry.node.config import (
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    PEER_PORT_OFFSET,
    NodeConfig,
    load,
)
from registry.node.discovery import node_id_of
from tests.system_tools import require_tool

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "registry.json"
DEFAULT_PEER_PORT = DEFAULT_GRPC_PORT + PEER_PORT_OFFSET
TLS_DIR = PurePosixPath("/etc/registry/tls")
TRANSFER_ELECTIONS = 4
"""A graceful stop transfers leadership for up to this many election timeouts
(``Node.drain`` in registry/node/server.py)."""


def node_args(argv: list[str]) -> argparse.Namespace:
    """``registry node <argv>`` parsed by the CLI's own parser; a typo fails the test."""
    try:
        return build_parser().parse_args(["node", *argv])
    except SystemExit:
        pytest.fail(f"`registry node` rejects the arguments {argv}")


def graceful_stop_s(cfg: NodeConfig) -> float:
    """Upper bound of the drain plus the leadership transfer that follows it."""
    return cfg.drain_timeout + TRANSFER_ELECTIONS * cfg.timing.election_timeout


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def yaml_docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def seconds(value: str | int) -> float:
    """A Compose duration such as ``30s``, ``1m30s`` or a plain number of seconds."""
    if isinstance(value, int):
        return value
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", value)
    assert parts and value, f"unexpected duration {value!r}"
    return 60 * int(parts[1] or 0) + int(parts[2] or 0)


# -- Docker Compose ---------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    (doc,) = yaml_docs(DEPLOY / "docker-compose.yml")
    return doc


def node_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


def compose_path(source: str) -> Path:
    """A bind-mount or build path of the Compose file (relative to deploy/)."""
    return (DEPLOY / source).resolve()


def test_compose_runs_three_nodes_built_from_the_dockerfile() -> None:
    nodes = node_services()
    assert sorted(nodes) == ["n1", "n2", "n3"]
    for service in nodes.values():
        assert compose_path(service["build"]["context"]) == REPO
        assert (REPO / service["build"]["dockerfile"]).is_file()


def test_compose_node_command_lines_are_valid_configs() -> None:
    nodes = node_services()
    host_ports: list[int] = []
    for name, service in nodes.items():
        cfg = node_config(node_args(service["command"]))
        assert cfg.id == name
        assert port_of(cfg.listen) == DEFAULT_GRPC_PORT
        assert port_of(cfg.http) == DEFAULT_HTTP_PORT
        assert cfg.advertise == f"{name}:{DEFAULT_GRPC_PORT}", "peers reach it by service name"
        assert cfg.peers == {n: f"{n}:{DEFAULT_GRPC_PORT}" for n in nodes}, name
        published = {int(m.split(":")[1]): int(m.split(":")[0]) for m in service["ports"]}
        assert sorted(published) == [DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT], name
        assert port_of(cfg.peer_bind) == DEFAULT_PEER_PORT not in published, "peers: unpublished"
        host_ports += published.values()
        volumes = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert cfg.peer_tls and cfg.cluster_id == "compose-demo", name
        mounted = {
            cfg.peer_ca: "./tls/ca.pem",
            cfg.peer_cert: f"./tls/{name}.pem",
            cfg.peer_key: f"./tls/{name}-key.pem",
        }
        assert {path: volumes.get(path) for path in mounted} == mounted, name
        assert str(cfg.data_dir) in volumes, f"{name}: the data dir must be a volume"
        assert volumes[str(cfg.data_dir)] in compose()["volumes"], "a named volume"
    assert len(host_ports) == len(set(host_ports)), f"host ports clash: {host_ports}"


def test_compose_restarts_nodes_and_waits_for_a_graceful_stop() -> None:
    for name, service in node_services().items():
        cfg = node_config(node_args(service["command"]))
        assert service["restart"] in ("always", "unless-stopped"), name
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM"
        assert seconds(service["stop_grace_period"]) > graceful_stop_s(cfg), name


def test_prometheus_scrapes_exactly_the_nodes_http_ports() -> None:
    service = compose()["services"]["prometheus"]
    mounts = dict(v.split(":")[:2] for v in service["volumes"])
    config_path = compose_path(next(s for s, t in mounts.items() if t.endswith("prometheus.yml")))
    assert config_path == DEPLOY / "prometheus" / "prometheus.yml"
    assert "--config.file=" + mounts[next(iter(mounts))] in service["command"]
    (config,) = yaml_docs(config_path)
    (job,) = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert sorted(targets) == [f"{n}:{DEFAULT_HTTP_PORT}" for n in sorted(node_services())]


def test_prometheus_config_passes_promtool() -> None:
    promtool = require_tool("promtool", "prometheus")
    result = subprocess.run(
        [promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_prometheus_and_the_registry_dashboard() -> None:
    service = compose()["services"]["grafana"]
    mounts = {t: compose_path(s) for s, t, *_ in (v.split(":") for v in service["volumes"])}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == DEPLOY / "grafana" / "provisioning"

    (datasources,) = yaml_docs(provisioning / "datasources" / "prometheus.yml")
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    prometheus = compose()["services"]["prometheus"]
    container_port = int(prometheus["ports"][0].split(":")[1])
    assert source["url"] == f"http://prometheus:{container_port}"

    (dashboards,) = yaml_docs(provisioning / "dashboards" / "registry.yml")
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file"
    folder = PurePosixPath(provider["options"]["path"])
    mounted = {target: source for target, source in mounts.items() if target.endswith(".json")}
    assert mounted == {str(folder / "registry.json"): DASHBOARD}
    assert DASHBOARD.is_file(), f"{DASHBOARD} is missing"
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard.get("panels"), "the dashboard has panels"


# -- Dockerfile ---------------------------------------------------------------------------


@cache
def dockerfile() -> dict[str, list[str]]:
    """Instruction → its argument strings (continuation lines joined)."""
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    instructions: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.setdefault(word.upper(), []).append(rest.strip())
    return instructions


def test_dockerfile_runs_registry_node_as_a_user_with_a_data_volume() -> None:
    d = dockerfile()
    assert d["FROM"] == ["python:3.11-slim"]
    (user,) = d["USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert json.loads(d["ENTRYPOINT"][0]) == ["registry", "node"]
    defaults = node_args(json.loads(d["CMD"][0]))
    defaults.id = "n1"  # the one thing every `docker run` must add (with --peers or DNS)
    cfg = node_config(defaults)
    assert json.loads(d["VOLUME"][0]) == [str(cfg.data_dir)]
    assert any(f"chown {user} {cfg.data_dir}" in run for run in d["RUN"]), "owned by the user"
    exposed = {int(p) for p in d["EXPOSE"][0].split()}
    assert exposed == {DEFAULT_GRPC_PORT, DEFAULT_PEER_PORT, DEFAULT_HTTP_PORT}
    assert (port_of(cfg.listen), port_of(cfg.http)) == (DEFAULT_GRPC_PORT, DEFAULT_HTTP_PORT)
    assert port_of(cfg.peer_bind) == DEFAULT_PEER_PORT
    assert cfg.peer_tls, "a container listens on 0.0.0.0: peers need TLS"
    assert all(PurePosixPath(f).parent == TLS_DIR for f in (cfg.peer_ca, cfg.peer_cert))
    (healthcheck,) = d["HEALTHCHECK"]
    assert f"http://127.0.0.1:{DEFAULT_HTTP_PORT}/healthz" in healthcheck
    assert "urllib" in healthcheck, "slim has no curl"
    installs = [run for run in d["RUN"] if "pip install" in run]
    assert installs and not any("-e " in r or "[test]" in r for r in installs)


def test_dockerfile_uid_matches_the_kubernetes_security_context() -> None:
    useradd = next(r for r in dockerfile()["RUN"] if "useradd" in r)
    uid = int(re.search(r"--uid (\d+)", useradd)[1])  # type: ignore[index]
    security = pod_spec()["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == uid == security["fsGroup"]


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", "**/__pycache__"} <= set(ignored)


# -- Kubernetes ---------------------------------------------------------------------------


@cache
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → manifest, from every file the kustomization lists."""
    (kustomization,) = yaml_docs(DEPLOY / "k8s" / "kustomization.yaml")
    files = sorted(kustomization["resources"])
    present = sorted(p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.stem != "kustomization")
    assert files == present, "the kustomization lists every manifest"
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for name in files
        for doc in yaml_docs(DEPLOY / "k8s" / name)
    }


def statefulset() -> dict[str, Any]:
    (sts,) = [doc for (kind, _), doc in k8s().items() if kind == "StatefulSet"]
    return sts


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = statefulset()["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    (only,) = containers
    return only


def pod_labels() -> dict[str, str]:
    labels: dict[str, str] = statefulset()["spec"]["template"]["metadata"]["labels"]
    return labels


def k8s_config(pod: str = "registry-0", namespace: str = "default") -> NodeConfig:
    """The node config of one pod: args with $(VAR) expanded as the kubelet does, and the
    id the node takes from its host name (the pod name)."""
    env = {"POD_NAMESPACE": namespace, "POD_NAME": pod}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], a) for a in container()["args"]]
    parsed = node_args(args)
    assert parsed.id is None, "the id comes from the pod's host name"
    parsed.id = pod
    return node_config(parsed)


def container_port(name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    return int(ports[name])


def selects(selector: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= pod_labels().items()


def test_statefulset_discovers_exactly_its_replicas_through_the_headless_service() -> None:
    sts = statefulset()
    cfg = k8s_config()
    headless = k8s()[("Service", sts["spec"]["serviceName"])]
    assert cfg.discovery == "dns"
    assert sts["spec"]["replicas"] == 3 == cfg.expect
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    # _<port name>._tcp.<service>.<namespace>.svc.cluster.local: the SRV name Kubernetes
    # publishes for the headless Service's named gRPC port.
    port_name, proto, service, namespace, *_ = cfg.dns_name.split(".")
    assert (proto, service, namespace) == ("_tcp", headless["metadata"]["name"], "default")
    grpc = {p["name"]: p for p in headless["spec"]["ports"]}[port_name.lstrip("_")]
    assert grpc["port"] == container_port(grpc["targetPort"]) == DEFAULT_GRPC_PORT
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container()["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace", "POD_NAME": "metadata.name"}
    # The node id a pod gets (its host name) is the first label of its SRV target.
    target = f"registry-1.{service}.{namespace}.svc.cluster.local."
    assert node_id_of(target) == k8s_config(pod="registry-1").id == "registry-1"
    assert sts["metadata"]["name"] == "registry", "pod names registry-N"
    discovery_s = cfg.discovery_timeout
    startup = container()["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] > discovery_s


def test_headless_service_publishes_pods_before_they_are_ready() -> None:
    headless = k8s()[("Service", statefulset()["spec"]["serviceName"])]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    assert selects(headless["selector"])
    ports = {p["name"]: container_port(p["targetPort"]) for p in headless["ports"]}
    assert ports == {"grpc": DEFAULT_GRPC_PORT, "http": DEFAULT_HTTP_PORT}
    assert {p["name"]: p["port"] for p in headless["ports"]} == ports


def test_container_ports_and_probes_match_the_node() -> None:
    cfg = k8s_config()
    assert container_port("grpc") == port_of(cfg.listen) == DEFAULT_GRPC_PORT
    assert container_port("http") == port_of(cfg.http) == DEFAULT_HTTP_PORT
    assert container_port("peer") == port_of(cfg.peer_bind) == DEFAULT_PEER_PORT
    probes = {
        kind: (container()[kind]["httpGet"]["path"], container()[kind]["httpGet"]["port"])
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert probes == {
        "readinessProbe": ("/readyz", "http"),
        "livenessProbe": ("/healthz", "http"),
        "startupProbe": ("/healthz", "http"),
    }
    annotations = statefulset()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == DEFAULT_HTTP_PORT
    assert annotations["prometheus.io/path"] == "/metrics"


def test_pods_get_time_to_hand_off_and_keep_their_data() -> None:
    cfg = k8s_config()
    assert pod_spec()["terminationGracePeriodSeconds"] > graceful_stop_s(cfg)
    (claim,) = statefulset()["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in container()["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == str(cfg.data_dir)
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_selectors_match_the_pods_and_the_budget_keeps_a_quorum() -> None:
    sts = statefulset()
    assert sts["spec"]["selector"]["matchLabels"].items() <= pod_labels().items()
    client = k8s()[("Service", "registry-client")]["spec"]
    assert selects(client["selector"])
    assert {p["name"]: container_port(p["targetPort"]) for p in client["ports"]} == {
        "grpc": DEFAULT_GRPC_PORT
    }, "the client Service must not expose the peer port"
    (pdb,) = [doc for (kind, _), doc in k8s().items() if kind == "PodDisruptionBudget"]
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    voters = sts["spec"]["replicas"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert voters - pdb["spec"]["maxUnavailable"] >= voters // 2 + 1, "a quorum stays up"


def test_pods_authenticate_as_their_pod_name_with_the_mounted_certificates() -> None:
    cfg = k8s_config(pod="registry-2")
    assert cfg.peer_tls and cfg.cluster_id == "registry.default"
    assert PurePosixPath(cfg.peer_cert) == TLS_DIR / "registry-2.pem", "the CN is the node id"
    assert PurePosixPath(cfg.peer_key) == TLS_DIR / "registry-2-key.pem"
    mounts = {m["name"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    (tls,) = [name for name, m in mounts.items() if m["mountPath"] == str(TLS_DIR)]
    assert mounts[tls]["readOnly"] is True
    assert volumes[tls]["secret"]["secretName"] == "registry-peer-tls"
    assert volumes[tls]["secret"]["defaultMode"] & 0o007 == 0, "keys not world-readable"


def test_only_registry_pods_reach_the_peer_port() -> None:
    (policy,) = [doc for (kind, _), doc in k8s().items() if kind == "NetworkPolicy"]
    assert selects(policy["spec"]["podSelector"]["matchLabels"])
    rules = policy["spec"]["ingress"]
    peer_rules = [r for r in rules if any(p["port"] == "peer" for p in r["ports"])]
    (peer_rule,) = peer_rules
    assert [selects(f["podSelector"]["matchLabels"]) for f in peer_rule["from"]] == [True]
    open_ports = {p["port"] for r in rules if "from" not in r for p in r["ports"]}
    assert open_ports == {"grpc", "http"}


# -- systemd ------------------------------------------------------------------------------


@cache
def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DEPLOY / "systemd" / "registry.service", encoding="utf-8")
    return parser


def example_config() -> NodeConfig:
    return load(DEPLOY / "systemd" / "node.toml.example")


def test_systemd_unit_runs_registry_node_with_its_config() -> None:
    service = unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert PurePosixPath(argv[0]).name == "registry"
    assert argv[1:] == ["node", "--config", "/etc/registry/node.toml"]
    parsed = node_args(argv[2:])
    assert parsed.config == Path("/etc/registry/node.toml")
    parsed.config = DEPLOY / "systemd" / "node.toml.example"  # what the admin installs there
    cfg = node_config(parsed)
    assert cfg.data_dir == Path("/var/lib") / service["StateDirectory"]
    assert service["User"] not in ("root", "0")


def test_systemd_restarts_the_node_and_waits_for_a_graceful_stop() -> None:
    service = unit()["Service"]
    assert service["Restart"] == "always", "a fenced node (exit 75) must come back"
    assert float(service["RestartSec"]) > 0
    assert service["KillSignal"] == "SIGTERM"
    slowest = load(None, id="n1", preset="wan")  # the unit must suit every preset
    assert float(service["TimeoutStopSec"]) > graceful_stop_s(slowest)


def test_systemd_example_config_is_valid() -> None:
    cfg = example_config()
    assert cfg.id in cfg.peers and len(cfg.peers) == 3
    assert port_of(cfg.listen) == DEFAULT_GRPC_PORT and port_of(cfg.http) == DEFAULT_HTTP_PORT
    assert cfg.advertise == cfg.peers[cfg.id]
    assert cfg.peer_tls and cfg.cluster_id, "a LAN node needs peer TLS and a cluster id"
    assert port_of(cfg.peer_bind) == DEFAULT_PEER_PORT
    assert cfg.peer_address("n2") == "10.0.0.12:8400"


ALERTS = DEPLOY / "prometheus" / "alerts.yml"


def test_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    """``promtool check rules`` accepts them, and ``alerts_test.yml`` shows each alert
    firing on the series it is about and quiet on a healthy cluster."""
    promtool = require_tool("promtool", "prometheus")
    for command in (
        ["check", "rules", str(ALERTS)],
        ["test", "rules", str(ALERTS.with_name("alerts_test.yml"))],
    ):
        result = subprocess.run(
            [promtool, *command], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_use_only_metrics_the_nodes_export() -> None:
    (rules,) = yaml_docs(ALERTS)
    used = {
        name
        for group in rules["groups"]
        for rule in group["rules"]
        for name in re.findall(r"registry_[a-z_]+", rule["expr"])
    }
    documented = set(
        re.findall(r"`(registry_[a-z_]+)`", (REPO / "docs" / "metrics.md").read_text())
    )
    assert used and used <= documented, used - documented


# -- client auth (issue 16) -----------------------------------------------------------------


def test_pods_serve_clients_over_tls_with_tokens_from_a_secret() -> None:
    cfg = k8s_config(pod="registry-1")
    assert cfg.client_tls and cfg.auth == "tokens"
    assert PurePosixPath(cfg.client_cert) == TLS_DIR / "registry-1.pem"
    mounts = {m["mountPath"]: m for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    token_dir = str(PurePosixPath(cfg.token_file).parent)
    mount = mounts[token_dir]
    assert mount["readOnly"] is True
    secret_name = volumes[mount["name"]]["secret"]["secretName"]
    assert volumes[mount["name"]]["secret"]["defaultMode"] & 0o007 == 0
    (secret,) = [
        doc for (kind, name), doc in k8s().items() if (kind, name) == ("Secret", secret_name)
    ]
    text = secret["stringData"][PurePosixPath(cfg.token_file).name]
    tokens = TokenFile.parse(tomllib.loads(text), secret_name)
    assert tokens.tokens and all(t.secret for t in tokens.tokens.values()), "hashed secrets"


def test_dockerfile_and_systemd_turn_client_auth_on_and_compose_says_why_not() -> None:
    defaults = node_args(json.loads(dockerfile()["CMD"][0]))
    defaults.id = "n1"
    for cfg in (node_config(defaults), example_config()):
        assert cfg.auth == "tokens" and cfg.client_tls and cfg.token_file
    for service in node_services().values():
        cfg = node_config(node_args(service["command"]))
        assert cfg.auth == "off" and cfg.insecure_clients  # the one-host playground
