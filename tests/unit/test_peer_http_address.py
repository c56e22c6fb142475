"""Peers tell each other where their status pages are (``registry-http`` stream
metadata); only a plain host:port is kept, so a peer cannot put anything else into the
links of another node's status page."""

from __future__ import annotations

from registry.node.transport import HTTP_KEY, PeerTransport


def transport() -> PeerTransport:
    return PeerTransport("n1", lambda _peer: None, lambda _msg: None, http_address="10.0.0.1:9400")


def test_a_host_port_is_kept_and_our_own_address_is_ours() -> None:
    t = transport()
    assert t.http_metadata() == ((HTTP_KEY, "10.0.0.1:9400"),)
    t.note_http("n2", [("x", "y"), (HTTP_KEY, "10.0.0.2:9401")])
    t.note_http("n3", [(HTTP_KEY, "[fd00::3]:9400")])
    assert t.http_address_of("n1") == "10.0.0.1:9400"
    assert t.http_address_of("n2") == "10.0.0.2:9401"
    assert t.http_address_of("n3") == "[fd00::3]:9400"
    assert t.http_address_of("n4") == ""


def test_anything_but_host_port_is_ignored() -> None:
    t = transport()
    for hostile in (
        "javascript:alert(1)",
        'evil.example:80/"><script>',
        "host:port",
        "a b:80",
        "",
        "x" * 300 + ":80",
    ):
        t.note_http("n2", [(HTTP_KEY, hostile)])
    t.note_http("n2", [(HTTP_KEY, b"10.0.0.2:9400")])  # bytes: not a text value
    assert t.http_address_of("n2") == ""
    assert PeerTransport("n1", lambda _p: None, lambda _m: None).http_metadata() == ()
