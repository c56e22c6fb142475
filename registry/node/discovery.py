"""Finding the bootstrap voters: ``static`` (``peers`` as configured), ``dns`` (SRV), or
``ec2`` (tagged running instances: ``registry.node.discovery_ec2``; steps 3 below apply).

DNS discovery, theory of operation:

1. Ask for the SRV records of ``dns_name`` (on Kubernetes, a headless Service's named
   port: ``_grpc._tcp.registry.<ns>.svc.cluster.local``). Each record's target is a pod's
   own name (``registry-0.registry.<ns>.svc.cluster.local.``); its first label is the
   node id, the record's port is the node's gRPC port. A records cannot be used: an IP
   names no node, and node ids are Raft voter ids, so they must be stable.
2. A peer's address is ``target:port`` when the system resolver is used (gRPC resolves
   the name again on every reconnect, so a pod that comes back with a new IP is found),
   or ``ip:port`` from the target's A record when ``dns_server`` names a server of its
   own (gRPC's resolver would not know that server's names).
3. Ask again every ``POLL_S`` until exactly ``expect`` distinct ids are listed, logging
   progress every ``PROGRESS_S``; then those are the bootstrap voters. More than
   ``expect`` is an error rather than a choice: nodes that picked different subsets
   would bootstrap different clusters. So is a voter list without this node (unless it
   is a learner, which only needs somebody to join), and running out of
   ``discovery_timeout``.

Every query has a bounded lifetime, and the resolver is dnspython's asyncio one, so the
event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from registry.core.errors import RegistryError
from registry.node.config import NodeConfig

__all__ = [
    "DiscoveryFailed",
    "DnsLookup",
    "SrvTarget",
    "discover",
    "node_id_of",
    "peers_from_targets",
]

log = logging.getLogger("registry.discovery")

POLL_S = 1.0
"""Seconds between two rounds of DNS queries while fewer than ``expect`` voters are listed."""
PROGRESS_S = 3.0
"""Seconds between two progress lines in the log."""
QUERY_LIFETIME_S = 2.0
"""Upper bound of one DNS query (all retries included), seconds."""


class DiscoveryFailed(RegistryError):
    """The voters could not be found, or the answer contradicts this node's config."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SrvTarget:
    """One SRV record: a node's host name (absolute, without the final dot) and port,
    and its IPv4 address when one was looked up (``dns_server`` given)."""

    host: str
    port: int
    ip: str = ""


def node_id_of(host: str) -> str:
    """The node id a target names: its first label (``registry-0.registry.ns.svc...`` →
    ``registry-0``), as a StatefulSet pod's host name is its name."""
    return host.rstrip(".").split(".", 1)[0]


def peers_from_targets(targets: Iterable[SrvTarget]) -> dict[str, str]:
    """``id -> host:port`` (or ``ip:port`` when an IP was looked up).

    Two records naming one id with different addresses are a broken zone, not a choice
    to make silently: ``DiscoveryFailed``.
    """
    peers: dict[str, str] = {}
    for target in sorted(targets, key=lambda t: (t.host, t.port)):
        node = node_id_of(target.host)
        if not node:
            raise DiscoveryFailed(f"SRV target {target.host!r} has no host label")
        address = f"{target.ip or target.host}:{target.port}"
        if peers.get(node, address) != address:
            raise DiscoveryFailed(
                f"SRV records give node {node!r} two addresses: {peers[node]} and {address}"
            )
        peers[node] = address
    return peers


Lookup = Callable[[], Awaitable[list[SrvTarget]]]


class DnsLookup:
    """One round of queries: SRV of ``name``, then (with ``server``) A of each target."""

    def __init__(self, name: str, server: str = "") -> None:
        self.name = dns.name.from_text(name)  # absolute: no search-domain guessing
        self._resolve_ips = bool(server)
        try:
            self._resolver = dns.asyncresolver.Resolver(configure=not server)
        except dns.resolver.NoResolverConfiguration as exc:
            raise DiscoveryFailed(f"no system DNS resolver configured: {exc}") from None
        if server:
            host, _, port = server.rpartition(":")
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host.strip("[]"), int(port))
            ]
        self._resolver.lifetime = QUERY_LIFETIME_S
        self._resolver.timeout = QUERY_LIFETIME_S / 2

    async def __call__(self) -> list[SrvTarget]:
        answer = await self._resolver.resolve(self.name, "SRV", raise_on_no_answer=False)
        records = [(r.target, int(r.port)) for r in answer.rrset or ()]
        targets = []
        for target, port in records:
            host = target.to_text(omit_final_dot=True)
            ip = ""
            if self._resolve_ips:
                ip = self._additional_ip(answer, target) or await self._lookup_ip(target)
            targets.append(SrvTarget(host=host, port=port, ip=ip))
        return targets

    @staticmethod
    def _additional_ip(answer: dns.resolver.Answer, target: dns.name.Name) -> str:
        """The target's A record if the server sent it along (the usual case)."""
        for rrset in answer.response.additional:
            if rrset.name == target and rrset.rdtype == dns.rdatatype.A:
                return str(min(r.address for r in rrset))
        return ""

    async def _lookup_ip(self, target: dns.name.Name) -> str:
        answer = await self._resolver.resolve(target, "A")
        return str(min(r.address for r in answer))


async def discover(
    cfg: NodeConfig,
    lookup: Lookup | None = None,
    *,
    poll: float = POLL_S,
    progress_every: float = PROGRESS_S,
) -> NodeConfig:
    """``cfg`` with ``peers`` filled in (and ``advertise``, if unset) from discovery.

    ``static``: ``cfg`` as it is. ``dns``: see the module docstring; ``lookup`` replaces
    the real DNS queries (default ``DnsLookup``); ``poll`` and ``progress_every`` are the
    seconds between query rounds and between progress lines.
    """
    if cfg.discovery == "static":
        return cfg
    find: Callable[[], Awaitable[dict[str, str]]]
    if cfg.discovery == "ec2":
        from registry.node.discovery_ec2 import Ec2Lookup

        find, name = Ec2Lookup(cfg), f"instances tagged {cfg.ec2_tag}"
    else:
        name = cfg.dns_name
        srv = lookup or DnsLookup(name, cfg.dns_server)

        async def find() -> dict[str, str]:
            return peers_from_targets(await srv())

    how = f"{cfg.discovery} discovery"
    deadline = time.monotonic() + cfg.discovery_timeout
    next_progress = time.monotonic() + progress_every
    peers: dict[str, str] = {}
    last_error = ""
    while True:
        try:
            peers = await find()
            last_error = ""
        except (dns.exception.DNSException, OSError) as exc:
            # NXDOMAIN, no answer, timeout, no route, an EC2 API error: not there yet.
            last_error = f"{type(exc).__name__}: {exc}"
        if len(peers) > cfg.expect:
            raise DiscoveryFailed(
                f"{how}: {name} lists {len(peers)} nodes ({_show(peers)}) but "
                f"expect = {cfg.expect}; expect must equal the number of bootstrap voters "
                "(run further members as learners)"
            )
        if len(peers) == cfg.expect:
            break
        now = time.monotonic()
        if now >= deadline:
            raise DiscoveryFailed(
                f"{how}: found {len(peers)} of {cfg.expect} peers under {name} "
                f"within {cfg.discovery_timeout:g} s ({_show(peers) or 'none'})"
                + (f"; last error: {last_error}" if last_error else "")
            )
        if now >= next_progress:
            log.info(
                "%s: found %d of %d peers under %s: %s%s",
                how,
                len(peers),
                cfg.expect,
                name,
                _show(peers) or "none",
                f" (last error: {last_error})" if last_error else "",
            )
            next_progress = now + progress_every
        await asyncio.sleep(min(poll, max(0.0, deadline - now)))
    return _with_peers(cfg, peers, how, name)


def _with_peers(cfg: NodeConfig, peers: dict[str, str], how: str, name: str) -> NodeConfig:
    if cfg.learner:
        log.info("%s: joining %s as a learner", how, _show(peers))
        return replace(cfg, peers=peers).validate()
    own = peers.get(cfg.id)
    if own is None:
        hint = (
            f"the id must be the instance's {cfg.ec2_id_tag or 'registry-node-id'} tag, "
            "else its instance id"
            if cfg.discovery == "ec2"
            else "the id must be the first label of this node's SRV target (its pod name)"
        )
        raise DiscoveryFailed(
            f"{how}: this node's id {cfg.id!r} is not among the voters {name} lists "
            f"({_show(peers)}); {hint}: set id, or check the name"
        )
    log.info("%s: bootstrap voters %s (this node is %s)", how, _show(peers), cfg.id)
    return replace(cfg, peers=peers, advertise=cfg.advertise or own).validate()


def _show(peers: dict[str, str]) -> str:
    return ", ".join(f"{node}={address}" for node, address in sorted(peers.items()))
