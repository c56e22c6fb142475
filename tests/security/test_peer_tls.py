"""Peer mTLS over real gRPC on loopback: a message reaches the node it was meant for,
with the sender's certificate as its identity; a link whose address leads to another
node (a wrong peer address, or someone else answering there) delivers nothing, because
the server's certificate does not name the node the client meant."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc.aio

from registry.core.membership import MemberHeartbeat
from registry.core.replica import PeerMessage
from registry.node.certs import dev_certs
from registry.node.peer_tls import PeerTls
from registry.node.transport import SERVER_OPTIONS, PeerTransport
from registry.testing.local_cluster import free_ports

SENT = 20


def _tls(root: Path, node: str) -> PeerTls:
    files = dev_certs(root, ["a", "b", "c"])[node]
    return PeerTls.load(str(files.ca), str(files.cert), str(files.key))


async def _serve(
    node: str, address: str, tls: PeerTls, inbox: list[PeerMessage]
) -> grpc.aio.Server:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    receiver = PeerTransport(node, lambda _: None, inbox.append, cluster_id="x", tls=tls)
    assert receiver.add_to(server, address) != 0
    await server.start()
    return server


def test_a_link_delivers_only_to_the_node_its_certificate_names(tmp_path: Path) -> None:
    b_addr, c_addr = (f"127.0.0.1:{p}" for p in free_ports(2))

    refusals: list[str] = []

    async def main() -> tuple[list[PeerMessage], list[PeerMessage], int]:
        at_b: list[PeerMessage] = []
        at_c: list[PeerMessage] = []
        servers = [
            await _serve("b", b_addr, _tls(tmp_path, "b"), at_b),
            await _serve("c", c_addr, _tls(tmp_path, "c"), at_c),
        ]
        # a's idea of where b and c are: c's address is wrong (it is b's).
        where = {"b": b_addr, "c": b_addr}
        sender = PeerTransport(
            "a",
            where.get,
            lambda _: None,
            cluster_id="x",
            tls=_tls(tmp_path, "a"),
            refused=refusals.append,
        )
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            seq = 0
            while len(at_b) < SENT and loop.time() < deadline:
                seq += 1
                sender.send(
                    [
                        MemberHeartbeat(src="a", dst="b", seq=seq, incarnation=1),
                        MemberHeartbeat(src="a", dst="c", seq=seq, incarnation=1),
                    ]
                )
                await asyncio.sleep(0.02)  # the send rate, not a wait for a result
            return at_b, at_c, sender._links["c"].broken
        finally:
            await sender.close()
            for server in servers:
                await server.stop(None)

    at_b, at_c, c_broken = asyncio.run(main())
    assert len(at_b) >= SENT and all(m.src == "a" and m.dst == "b" for m in at_b)
    assert at_c == [], "c's server was never reached"
    assert c_broken >= 1, "the link to 'c' at b's address failed its handshake"
    assert refusals and set(refusals) == {"tls_handshake"}, refusals
