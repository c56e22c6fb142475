"""Node config typing: every field strictly typed from TOML, every field settable from a
``REGISTRY_*`` environment variable, sizes with units, and a bad config exits 2 with one
line naming the field (``registry node``)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from registry.core.errors import ConfigError
from registry.node.config import NodeConfig, load_from
from registry.node.config_values import kinds, parse_size

BASE = 'id = "n1"\n[peers]\nn1 = "127.0.0.1:7400"\n'


def _load(
    tmp_path: Path, toml: str = "", env: dict[str, str] | None = None, **flags: Any
) -> NodeConfig:
    path = tmp_path / "node.toml"
    path.write_text(toml + BASE, encoding="utf-8")
    return load_from(path, env or {}, flags)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('roles = "web"', "roles"),
        ('worker_modules = "myapp"', "worker_modules"),
        ('fsync = "false"', "fsync"),
        ("learner = 1", "learner"),
        ('expect = "3"', "expect"),
        ("expect = true", "expect"),
        ('healthz_stall_s = "5"', "healthz_stall_s"),
        ('max_payload_bytes = "4 lots"', "max_payload_bytes"),
        ('max_payload_bytes = "1.5B"', "max_payload_bytes"),
        ("listen = 7400", "listen"),
        ("data_dir = 1", "data_dir"),
        ("roles = [1, 2]", "roles"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_field(
    tmp_path: Path, line: str, field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field} must be"):
        _load(tmp_path, line + "\n")


def test_a_timing_value_of_the_wrong_type_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^timing\.lease must be a number of seconds"):
        _load(tmp_path, '[timing]\nlease = "1s"\n')


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4MB", 4_000_000),
        ("4MiB", 4 << 20),
        ("64 KiB", 65536),
        ("1GB", 10**9),
        ("12", 12),
        ("2b", 2),
    ],
)
def test_sizes_take_decimal_and_binary_units(text: str, size: int) -> None:
    assert parse_size("x", text) == size


def test_a_size_with_a_unit_in_the_file(tmp_path: Path) -> None:
    cfg = _load(tmp_path, 'max_payload_bytes = "4MB"\nstorage_reserve_bytes = "1GiB"\n')
    assert (cfg.max_payload_bytes, cfg.storage_reserve_bytes) == (4_000_000, 1 << 30)


# A value per kind, as environment text and as the field then holds it.
SAMPLES: dict[str, tuple[str, object]] = {
    "text": ("", ""),  # per field below
    "bool": ("false", False),
    "int": ("7", 7),
    "size": ("2MiB", 2 << 20),
    "seconds": ("2.5", 2.5),
    "path": ("/srv/registry", Path("/srv/registry")),
    "list": ("a, b", ("a", "b")),
    "table": (
        "n1=127.0.0.1:7400,n2=127.0.0.1:7401",
        {"n1": "127.0.0.1:7400", "n2": "127.0.0.1:7401"},
    ),
}
TEXT = {
    "id": "n1",
    "listen": "127.0.0.1:7500",
    "advertise": "10.0.0.1:7500",
    "http": "127.0.0.1:9500",
    "discovery": "static",
    "dns_name": "",
    "dns_server": "",
    "preset": "wan",
    "ec2_tag": "registry-cluster=prod",
    "ec2_region": "eu-west-1",
    "ec2_id_tag": "registry-node-id",
    "ec2_endpoint": "http://127.0.0.1:1",
    "peer_listen": "127.0.0.1:8500",
    "cluster_id": "prod-1",
    "peer_ca": "ca.pem",
    "peer_cert": "n1.pem",
    "peer_key": "n1-key.pem",
    "client_cert": "client.pem",
    "client_key": "client-key.pem",
    "client_ca": "client-ca.pem",
    "auth": "tokens",
    "tracing": "jsonl:spans.jsonl",
    "token_file": "tokens.toml",
}
PEER_TLS = ("peer_ca", "peer_cert", "peer_key")
TOGETHER = {  # fields only valid with others (validate() names the missing ones)
    **{f: PEER_TLS for f in PEER_TLS},
    **{f: (*PEER_TLS, "client_cert", "client_key") for f in ("client_cert", "client_key")},
    "client_ca": (*PEER_TLS, "client_cert", "client_key", "client_ca"),
    "auth": ("auth", "token_file"),
}


def test_every_field_has_a_kind_and_an_environment_variable(tmp_path: Path) -> None:
    field_kinds = kinds(NodeConfig)
    for field in fields(NodeConfig):
        if field.name == "timing":
            continue
        kind = field_kinds[field.name]
        assert kind != "other", f"{field.name}: no config kind for {field.type}"
        text, expected = (TEXT[field.name], TEXT[field.name]) if kind == "text" else SAMPLES[kind]
        env = {f"REGISTRY_{field.name.upper()}": text}
        if field.name == "learner":
            env["REGISTRY_LEARNER"], expected = "true", True
        env.update({f"REGISTRY_{n.upper()}": TEXT[n] for n in TOGETHER.get(field.name, ())})
        cfg = _load(tmp_path, env=env)
        assert getattr(cfg, field.name) == expected, field.name


def test_timing_fields_come_from_the_environment_too(tmp_path: Path) -> None:
    cfg = _load(tmp_path, env={"REGISTRY_TIMING_LEASE": "2.5", "REGISTRY_PRESET": "wan"})
    assert cfg.timing.lease == 2.5 and cfg.preset == "wan"


def test_the_file_then_the_environment_then_flags(tmp_path: Path) -> None:
    toml = 'roles = ["file"]\nmax_state_bytes = 1\nsnapshot_entries = 5\n'
    env = {"REGISTRY_ROLES": "env", "REGISTRY_MAX_STATE_BYTES": "2", "REGISTRY_UNRELATED": "x"}
    cfg = _load(tmp_path, toml, env, roles=["flag"])
    assert (cfg.roles, cfg.max_state_bytes, cfg.snapshot_entries) == (("flag",), 2, 5)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REGISTRY_FSYNC": "maybe"}, "REGISTRY_FSYNC must be true or false"),
        ({"REGISTRY_EXPECT": "three"}, "REGISTRY_EXPECT must be a whole number"),
        ({"REGISTRY_PEERS": "n1"}, "REGISTRY_PEERS must look like n1=host:port"),
        ({"REGISTRY_TIMING_LEASE": "soon"}, "REGISTRY_TIMING_LEASE must be a number"),
    ],
)
def test_a_bad_environment_value_is_refused_naming_the_variable(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        _load(tmp_path, env=env)


@pytest.mark.parametrize(
    ("toml", "env", "field"),
    [
        ('roles = "web"\n', {}, "roles"),
        ('max_payload_bytes = "4 lots"\n', {}, "max_payload_bytes"),
        ("", {"REGISTRY_FSYNC": "nope"}, "REGISTRY_FSYNC"),
    ],
)
def test_registry_node_exits_2_with_one_line_naming_the_field(
    tmp_path: Path, toml: str, env: dict[str, str], field: str
) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml + f'data_dir = "{tmp_path / "data"}"\n' + BASE, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "registry.cli", "node", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field} must be"), run.stderr


def test_an_unknown_field_from_a_flag_or_the_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown config field.*colour"):
        _load(tmp_path, colour=1)
    with pytest.raises(ConfigError, match=r"unknown config field.*shape"):
        _load(tmp_path, 'shape = "round"\n')
