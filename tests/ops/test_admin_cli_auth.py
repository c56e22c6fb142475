"""The admin commands (``registry member``, ``registry snapshot save``) speak TLS and carry
a token like every other command (issue 17): on a node with client TLS and token auth,
an ``admin`` token with the CA works; no token, a token without ``admin``, or no CA is
refused with the status a user can act on, and a refused snapshot writes no file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry.node.auth.policy import new_token
from tests.cluster.harness import LocalCluster

ROLES = """
[roles.ops]
read = [""]
admin = [""]

[roles.reader]
read = [""]
"""


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalCluster, dict[str, str]]]:
    root = tmp_path_factory.mktemp("admin-auth")
    tokens = {"ops": new_token("ops"), "reader": new_token("reader")}
    entries = [
        f'[tokens.{name}]\nrole = "{name}"\nsecret = "{stored}"\n'
        for name, (_, stored) in tokens.items()
    ]
    path = root / "tokens.toml"
    path.write_text(ROLES + "\n" + "\n".join(entries), encoding="utf-8")
    c = LocalCluster(root, 1, config={"auth": "tokens", "token_file": str(path)}, client_tls=True)
    try:
        c.start(timeout=30)
        yield c, {name: plain for name, (plain, _) in tokens.items()}
    finally:
        c.close()


def cli(
    c: LocalCluster, *argv: str, ca: bool = True, token: str = ""
) -> subprocess.CompletedProcess[str]:
    assert c.client_tls is not None
    addr = c.nodes[c.ids[0]].grpc_addr
    flags = ["--addr", addr, "--timeout", "10"]
    flags += ["--ca", str(c.client_tls.ca)] if ca else []
    flags += ["--token", token] if token else []
    env = {"PATH": "/usr/bin:/bin"}  # no REGISTRY_TOKEN / REGISTRY_CA from the caller
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *argv, *flags],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_member_list_needs_tls_and_an_admin_token(
    secured: tuple[LocalCluster, dict[str, str]],
) -> None:
    c, tokens = secured
    ok = cli(c, "member", "list", "--json", token=tokens["ops"])
    assert ok.returncode == 0, ok.stderr
    members = json.loads(ok.stdout)["members"]
    assert [m["id"] for m in members] == c.ids and all(m["role"] == "voter" for m in members)

    anonymous = cli(c, "member", "list")
    assert anonymous.returncode == 1 and "UNAUTHENTICATED" in anonymous.stderr, anonymous.stderr
    reader = cli(c, "member", "list", token=tokens["reader"])
    assert reader.returncode == 1 and "PERMISSION_DENIED" in reader.stderr, reader.stderr
    plaintext = cli(c, "member", "list", ca=False, token=tokens["ops"])
    assert plaintext.returncode == 1 and "UNAVAILABLE" in plaintext.stderr, plaintext.stderr


def test_snapshot_save_needs_an_admin_token_and_writes_nothing_when_refused(
    secured: tuple[LocalCluster, dict[str, str]], tmp_path: Path
) -> None:
    c, tokens = secured
    refused_file = tmp_path / "refused.snap"
    reader = cli(c, "snapshot", "save", str(refused_file), token=tokens["reader"])
    assert reader.returncode == 1 and "PERMISSION_DENIED" in reader.stderr, reader.stderr
    assert not refused_file.exists()

    saved_file = tmp_path / "ok.snap"
    ok = cli(c, "snapshot", "save", str(saved_file), token=tokens["ops"])
    assert ok.returncode == 0, ok.stderr
    assert saved_file.stat().st_size > 0 and "sha256" in ok.stdout


def test_a_missing_ca_file_is_one_line_and_exit_2(
    secured: tuple[LocalCluster, dict[str, str]], tmp_path: Path
) -> None:
    c, tokens = secured
    addr = c.nodes[c.ids[0]].grpc_addr
    missing = tmp_path / "nope.pem"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "registry.cli",
            "member",
            "list",
            "--addr",
            addr,
            "--ca",
            str(missing),
            "--token",
            tokens["ops"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "nope.pem" in run.stderr, run.stderr
