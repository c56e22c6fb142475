"""Peer discovery: config validation, id/address derivation, and the DNS wait loop
against a real (tiny) DNS server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from registry.cli import main
from registry.core.errors import ConfigError
from registry.node.config import NodeConfig, is_srv_name, load
from registry.node.discovery import (
    DiscoveryFailed,
    DnsLookup,
    SrvTarget,
    discover,
    node_id_of,
    peers_from_targets,
)
from tests.cluster.dns_server import TinyDns, tiny_dns

SRV = "_grpc._tcp.registry.test."
TARGETS = [("n1.registry.test", 7401), ("n2.registry.test", 7402), ("n3.registry.test", 7403)]


def fast(cfg: NodeConfig) -> Coroutine[Any, Any, NodeConfig]:
    """``discover`` polling every 50 ms and logging progress every 200 ms."""
    return discover(cfg, poll=0.05, progress_every=0.2)


def dns_config(tmp_path: Path, server: str, **extra: object) -> NodeConfig:
    values: dict[str, object] = {
        "id": "n1",
        "data_dir": tmp_path,
        "discovery": "dns",
        "dns_name": SRV,
        "dns_server": server,
        "expect": 3,
        "discovery_timeout": 10.0,
    }
    values.update(extra)
    return load(None, **values)


@pytest.fixture
def dns() -> Iterator[TinyDns]:
    with tiny_dns() as server:
        for i, (host, _) in enumerate(TARGETS, start=1):
            server.set_a(host, f"127.0.0.{i}")
        yield server


# -- config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"discovery": "consul"}, "discovery must be one of static, dns, ec2 (got 'consul')"),
        ({"discovery": "dns"}, "discovery = 'dns' needs dns_name"),
        (
            {"discovery": "dns", "dns_name": "registry.default.svc.cluster.local"},
            "dns_name must be an SRV name",
        ),
        ({"discovery": "dns", "dns_name": SRV, "expect": 0}, "expect must be at least 1 (got 0)"),
        ({"discovery": "dns", "dns_name": SRV, "expect": "3"}, "expect must be a whole number"),
        ({"discovery": "dns", "dns_name": SRV, "expect": 2.5}, "expect must be a whole number"),
        (
            {"discovery": "dns", "dns_name": SRV, "dns_server": "localhost:53"},
            "dns_server must look like ip:port",
        ),
        (
            {"discovery": "dns", "dns_name": SRV, "discovery_timeout": 0},
            "discovery_timeout must be > 0 s",
        ),
        (
            {"discovery": "dns", "dns_name": SRV, "peers": {"n1": "127.0.0.1:7400"}},
            "peers and discovery = 'dns' exclude each other",
        ),
        ({"dns_name": SRV}, "dns_name set, but discovery is 'static'"),
    ],
)
def test_bad_discovery_config_is_a_config_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load(None, id="n1", **overrides)
    assert message in str(info.value)


def test_dns_discovery_from_toml_and_id_from_the_host_name(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        'discovery = "dns"\n'
        'dns_name = "_grpc._tcp.registry.default.svc.cluster.local"\n'
        'dns_server = "127.0.0.1:5353"\n'
        "expect = 5\n"
        "discovery_timeout = 30\n",
        encoding="utf-8",
    )
    cfg = load(path)
    assert cfg.id == socket.gethostname().split(".")[0]
    assert (cfg.discovery, cfg.dns_name, cfg.dns_server) == (
        "dns",
        "_grpc._tcp.registry.default.svc.cluster.local",
        "127.0.0.1:5353",
    )
    assert (cfg.expect, cfg.discovery_timeout, cfg.peers) == (5, 30, {})
    assert load(path, id="registry-7").id == "registry-7", "an explicit id still wins"


def test_static_discovery_still_requires_an_id() -> None:
    with pytest.raises(ConfigError, match="node id is required"):
        load(None)


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("_grpc._tcp.registry.default.svc.cluster.local", True),
        ("_grpc._tcp.registry.test.", True),
        ("registry.default.svc.cluster.local", False),
        ("_grpc.registry.test", False),
        ("_._tcp.registry.test", False),
        ("_grpc._tcp", False),
        ("_grpc._tcp..test", False),
    ],
)
def test_srv_name_shape(name: str, ok: bool) -> None:
    assert is_srv_name(name) is ok


def test_cli_reports_a_bad_discovery_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["node", "--id", "n1", "--discovery", "dns", "--expect", "0"]) == 2
    err = capsys.readouterr().err
    assert "needs dns_name" in err and "expect must be at least 1 (got 0)" in err
    assert main(["node", "--id", "n1", "--discovery", "consul"]) == 2
    assert "invalid choice: 'consul'" in capsys.readouterr().err


# -- derivation ----------------------------------------------------------------------


def test_node_id_is_the_first_label_of_the_target() -> None:
    assert node_id_of("registry-0.registry.default.svc.cluster.local.") == "registry-0"
    assert node_id_of("registry-12.registry.default.svc.cluster.local") == "registry-12"
    assert node_id_of("n1") == "n1"


def test_peer_addresses_are_names_or_ips() -> None:
    names = [SrvTarget(host=f"registry-{i}.registry.ns.svc", port=7400) for i in (2, 0, 1)]
    assert peers_from_targets(names) == {
        "registry-0": "registry-0.registry.ns.svc:7400",
        "registry-1": "registry-1.registry.ns.svc:7400",
        "registry-2": "registry-2.registry.ns.svc:7400",
    }
    ips = [SrvTarget(host="n1.registry.test", port=7401, ip="10.0.0.7")]
    assert peers_from_targets(ips) == {"n1": "10.0.0.7:7401"}
    same_twice = [SrvTarget(host="n1.a", port=1), SrvTarget(host="n1.a", port=1)]
    assert peers_from_targets(same_twice) == {"n1": "n1.a:1"}


def test_one_id_with_two_addresses_is_refused() -> None:
    clash = [SrvTarget(host="n1.a.test", port=7400), SrvTarget(host="n1.b.test", port=7400)]
    with pytest.raises(DiscoveryFailed, match="node 'n1' two addresses"):
        peers_from_targets(clash)


# -- the wait loop against a real DNS server ------------------------------------------


def test_static_discovery_changes_nothing(tmp_path: Path) -> None:
    cfg = load(None, id="n1", data_dir=tmp_path, peers={"n1": "127.0.0.1:7400"})
    assert asyncio.run(discover(cfg)) is cfg


def test_dns_discovery_builds_peers_and_advertise(tmp_path: Path, dns: TinyDns) -> None:
    dns.set_srv(SRV, TARGETS)
    found = asyncio.run(fast(dns_config(tmp_path, dns.address)))
    assert found.peers == {"n1": "127.0.0.1:7401", "n2": "127.0.0.2:7402", "n3": "127.0.0.3:7403"}
    assert found.advertise == "127.0.0.1:7401" and found.address == "127.0.0.1:7401"
    kept = asyncio.run(fast(dns_config(tmp_path, dns.address, advertise="10.1.1.1:7400")))
    assert kept.advertise == "10.1.1.1:7400", "an explicit advertise address is kept"


def test_a_records_are_asked_for_when_not_sent_along(tmp_path: Path, dns: TinyDns) -> None:
    dns.additional = False
    dns.set_srv(SRV, [("n1.registry.test", 7401), ("other.example.test", 7500)])
    dns.set_a("other.example.test", "127.0.0.9")
    targets = asyncio.run(DnsLookup(SRV, dns.address)())
    assert sorted((t.host, t.port, t.ip) for t in targets) == [
        ("n1.registry.test", 7401, "127.0.0.1"),
        ("other.example.test", 7500, "127.0.0.9"),
    ]
    assert ("other.example.test.", "A") in dns.queries


def test_discovery_waits_until_every_voter_is_listed(
    tmp_path: Path, dns: TinyDns, caplog: pytest.LogCaptureFixture
) -> None:
    dns.set_srv(SRV, TARGETS[:2])

    async def scenario() -> NodeConfig:
        task = asyncio.ensure_future(fast(dns_config(tmp_path, dns.address)))
        deadline = time.monotonic() + 5
        # Let it see the incomplete answer and log progress at least once first.
        while "found 2 of 3 peers" not in caplog.text:
            assert time.monotonic() < deadline, "no progress line within 5 s"
            assert not task.done(), "discovery must not finish with 2 of 3 voters"
            await asyncio.sleep(0.02)
        dns.set_srv(SRV, TARGETS)
        return await asyncio.wait_for(task, 5)

    with caplog.at_level(logging.INFO, logger="registry.discovery"):
        found = asyncio.run(scenario())
    assert sorted(found.peers) == ["n1", "n2", "n3"]
    assert (
        f"dns discovery: found 2 of 3 peers under {SRV}: n1=127.0.0.1:7401, n2=127.0.0.2:7402"
        in caplog.text
    )


def test_discovery_times_out_with_what_it_found(tmp_path: Path, dns: TinyDns) -> None:
    dns.set_srv(SRV, TARGETS[:2])
    cfg = dns_config(tmp_path, dns.address, discovery_timeout=0.5)
    with pytest.raises(DiscoveryFailed) as info:
        asyncio.run(fast(cfg))
    assert str(info.value) == (
        f"dns discovery: found 2 of 3 peers under {SRV} within 0.5 s "
        "(n1=127.0.0.1:7401, n2=127.0.0.2:7402)"
    )


def test_a_missing_name_times_out_naming_the_dns_error(tmp_path: Path, dns: TinyDns) -> None:
    cfg = dns_config(tmp_path, dns.address, discovery_timeout=0.5)
    with pytest.raises(DiscoveryFailed, match=r"found 0 of 3 .*\(none\); last error: NXDOMAIN"):
        asyncio.run(fast(cfg))
    assert dns.srv_queries(SRV) >= 2, "it kept asking while it waited"


def test_this_node_must_be_among_the_voters(tmp_path: Path, dns: TinyDns) -> None:
    dns.set_srv(SRV, TARGETS)
    with pytest.raises(DiscoveryFailed) as info:
        asyncio.run(fast(dns_config(tmp_path, dns.address, id="n4")))
    assert "this node's id 'n4' is not among the voters" in str(info.value)
    assert "n1=127.0.0.1:7401, n2=127.0.0.2:7402, n3=127.0.0.3:7403" in str(info.value)


def test_a_learner_joins_the_voters_it_found(tmp_path: Path, dns: TinyDns) -> None:
    dns.set_srv(SRV, TARGETS)
    cfg = dns_config(tmp_path, dns.address, id="n4", learner=True)
    found = asyncio.run(fast(cfg))
    assert sorted(found.peers) == ["n1", "n2", "n3"] and found.learner


def test_more_voters_than_expected_is_refused(tmp_path: Path, dns: TinyDns) -> None:
    dns.set_a("n4.registry.test", "127.0.0.4")
    dns.set_srv(SRV, [*TARGETS, ("n4.registry.test", 7404)])
    with pytest.raises(DiscoveryFailed, match=r"lists 4 nodes .* but expect = 3"):
        asyncio.run(fast(dns_config(tmp_path, dns.address)))
