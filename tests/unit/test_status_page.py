"""The status page's parts without a browser: the recent-events ring fed by real Replicas
(tests/unit/replicanet.py), the ``/status/names`` query and search, and the HTTP routes
served by the real ``HttpServer`` on loopback."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from registry.core.commands import NameSpec, Register
from registry.core.messages import Ready
from registry.core.replica import ReplicaReady, Stop, StopReason
from registry.core.view import RegistryReader
from registry.node.events import EventLog
from registry.node.http import HttpServer, Routes
from registry.node.status_page import (
    MAX_NAMES_LIMIT,
    BadQuery,
    NamesQuery,
    content_security_policy,
    names_page,
    page_html,
    parse_names_query,
)
from tests.unit.replicanet import Cluster

# -- the events ring -------------------------------------------------------------------


class LoggedCluster(Cluster):
    """replicanet's cluster with an ``EventLog`` on every node, fed each Ready exactly as
    the node's ``_on_ready`` does; its clock is the harness step counter."""

    def __init__(self) -> None:
        self.logs: dict[str, EventLog] = {}
        super().__init__()

    def _drain(self, node: str) -> None:
        if node not in self.logs:
            replica = self.nodes[node]
            log = EventLog(replica.view, clock=lambda: float(self.step_no))
            self.logs[node] = log
            self.tee_readies(node, log.on_ready)
        super()._drain(node)

    def logged(self, node: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.logs[node].recent() if e["kind"] == kind]


def formed() -> LoggedCluster:
    cluster = LoggedCluster()
    cluster.tick_until(
        lambda: (
            len(cluster.leaders()) == 1
            and all(len(r.state.up_members()) == 3 for r in cluster.nodes.values())
            and all(r.agent.has_lease() for r in cluster.nodes.values())
        ),
        limit=100,
    )
    return cluster


def test_every_node_records_the_leader_and_the_members_coming_up() -> None:
    cluster = formed()
    leader = cluster.leader()
    for node in cluster.ids:
        leaders = cluster.logged(node, "leader")
        assert leaders, f"{node} recorded no leader change"
        latest = leaders[0]  # newest first
        assert latest["name"] == leader.id
        assert latest["detail"].startswith(f"leader {leader.id}, term {leader.raft.term} ")
        ups = {e["name"]: e["detail"] for e in cluster.logged(node, "member")}
        assert ups == {n: "up, incarnation 1" for n in cluster.ids}
    seqs = [e["seq"] for e in cluster.logs["n1"].recent()]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    cluster.tick(50)
    assert [e["seq"] for e in cluster.logs["n1"].recent()] == seqs, "nothing new when calm"


def test_starts_fences_failovers_and_handoffs_are_recorded_with_their_tokens() -> None:
    cluster = formed()
    names = [f"w{i}" for i in range(12)]
    index = cluster.propose(Register(specs=tuple(NameSpec(name=n, kind="k") for n in names)))
    cluster.tick(2)
    victim = next(n for n in cluster.ids if n not in cluster.leaders() and cluster.running[n])
    held = sorted(cluster.running[victim])
    starts = cluster.logged(victim, "start")
    assert sorted(e["name"] for e in starts) == held
    assert all(e["token"] == index and e["detail"] == "started (new), kind k" for e in starts)

    cluster.isolate(victim)
    cluster.tick_until(
        lambda: all(cluster.where(n) and victim not in cluster.where(n) for n in held)
    )
    stops = cluster.logged(victim, "stop")
    assert sorted(e["name"] for e in stops) == held
    assert all(e["detail"] == f"stopped ({StopReason.QUORUM_LOST.value})" for e in stops)
    (fence,) = cluster.logged(victim, "fence")
    assert fence["detail"] == f"lease lost, stopped {len(held)} workers, new incarnation 2"
    survivors = [n for n in cluster.ids if n != victim]
    failovers = [e for n in survivors for e in cluster.logged(n, "start") if e["name"] in held]
    assert sorted(e["name"] for e in failovers) == held
    assert all(
        e["detail"] == "started (failover), kind k" and e["token"] > index for e in failovers
    )
    for node in survivors:
        downs = [e for e in cluster.logged(node, "member") if e["detail"].startswith("down")]
        assert [e["name"] for e in downs] == [victim]

    tokens = {n: cluster.running[cluster.where(n)[0]][n] for n in held}
    cluster.heal()
    cluster.tick_until(lambda: sum(len(h) for h in cluster.handoffs.values()) == len(held))
    for node, requests in cluster.handoffs.items():
        recorded = {e["name"]: e["token"] for e in cluster.logged(node, "handoff")}
        assert recorded == {name: tokens[name] for name in requests}
    for node in survivors:
        back = [e for e in cluster.logged(node, "member") if e["name"] == victim]
        assert back[0]["detail"] == "up, incarnation 2", "the rejoin is the newest for it"


def test_the_ring_keeps_only_the_newest_events() -> None:
    cluster = formed()
    log = EventLog(cluster.leader().view, capacity=3, clock=lambda: 42.0)
    for i in range(5):
        log.record("start", name=f"n{i}", token=i)
    assert [(e["seq"], e["name"], e["time"]) for e in log.recent()] == [
        (5, "n4", 42.0),
        (4, "n3", 42.0),
        (3, "n2", 42.0),
    ]
    assert [e["seq"] for e in log.recent(2)] == [5, 4]
    with pytest.raises(ValueError, match="capacity must be at least 1"):
        EventLog(cluster.leader().view, capacity=0)


def test_a_fence_of_many_workers_keeps_the_newest_and_counts_them_all() -> None:
    """A fence stops every worker in one Ready: the log keeps the newest stops and the
    fence line counts all of them; the skipped ones still take their sequence numbers."""
    cluster = formed()
    log = EventLog(cluster.leader().view, capacity=20, clock=lambda: 42.0)
    stops = tuple(Stop(name=f"w{i}", token=i, reason=StopReason.QUORUM_LOST) for i in range(1, 51))
    log.on_ready(
        ReplicaReady(
            incarnation=2, raft=Ready(), compaction=None, messages=(), effects=stops, applied=()
        )
    )
    events = log.recent()
    fence = next(e for e in events if e["kind"] == "fence")
    assert fence["detail"] == "lease lost, stopped 50 workers, new incarnation 2"
    assert fence["seq"] == 51  # 50 stops before it, recorded or not
    kept = [(e["seq"], e["name"]) for e in events if e["kind"] == "stop"]
    assert kept and kept == [(i, f"w{i}") for i in range(50, 50 - len(kept), -1)]


# -- /status/names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", NamesQuery()),
        ("q=room%2F&limit=5&offset=10", NamesQuery(q="room/", limit=5, offset=10)),
        ("q=%3Cb%3E", NamesQuery(q="<b>")),
        ("q=", NamesQuery(q="")),
        (f"limit={MAX_NAMES_LIMIT * 5}", NamesQuery(limit=MAX_NAMES_LIMIT)),
    ],
)
def test_names_queries_parse(query: str, expected: NamesQuery) -> None:
    assert parse_names_query(query) == expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=0", "limit must be an integer ≥ 1 (got '0')"),
        ("limit=ten", "limit must be an integer ≥ 1 (got 'ten')"),
        ("limit=-3", "limit must be an integer ≥ 1 (got '-3')"),
        ("offset=-1", "offset must be an integer ≥ 0 (got '-1')"),
        ("offset=1.5", "offset must be an integer ≥ 0 (got '1.5')"),
        ("offset=99999999999999999999", "offset must be an integer ≥ 0"),
        ("sort=name", "unknown parameter 'sort'; known: q, limit, offset"),
        ("q=a&q=b", "parameter 'q' given 2 times"),
        ("q=%ff", "not valid UTF-8"),
        ("q=" + "a" * 2000, "query string longer than 1024 characters"),
    ],
)
def test_bad_names_queries_say_what_is_wrong(query: str, message: str) -> None:
    with pytest.raises(BadQuery) as info:
        parse_names_query(query)
    assert message in str(info.value)


def registered_state() -> tuple[LoggedCluster, RegistryReader]:
    cluster = formed()
    names = ["room/b", "room/a", "Room/C", "job/1", "<b>bold</b>"]
    cluster.propose(Register(specs=tuple(NameSpec(name=n, kind="k") for n in names)))
    cluster.tick(2)
    return cluster, cluster.leader().view().state


def test_names_are_searched_by_substring_case_insensitively_and_paged() -> None:
    cluster, state = registered_state()

    def address_of(node: str) -> str:
        return f"{node}:7000"

    page = names_page(state, NamesQuery(q="ROOM/"), address_of)
    assert page["total"] == 3
    assert [n["name"] for n in listed(page)] == ["Room/C", "room/a", "room/b"], "by name"
    for entry in listed(page):
        record = state.names[entry["name"]]
        assert entry["owner"] == record.holder == cluster.where(entry["name"])[0]
        assert entry["owner_address"] == f"{record.holder}:7000"
        assert entry["token"] == record.token
        assert (entry["kind"], entry["reason"], entry["state"]) == ("k", "new", "running")
        assert entry["moving_to"] == ""
    second = names_page(state, NamesQuery(q="room", limit=2, offset=2), address_of)
    assert (second["total"], [n["name"] for n in listed(second)]) == (3, ["room/b"])
    markup = names_page(state, NamesQuery(q="<b>"), address_of)
    assert [n["name"] for n in listed(markup)] == ["<b>bold</b>"]
    assert names_page(state, NamesQuery(), address_of)["total"] == 5
    nothing = names_page(state, NamesQuery(q="zzz", offset=3), address_of)
    assert (nothing["total"], listed(nothing)) == (0, [])


def listed(page: dict[str, object]) -> list[dict[str, Any]]:
    names = page["names"]
    assert isinstance(names, list)
    return names


# -- the page itself -------------------------------------------------------------------


def test_the_page_is_self_contained_and_inserts_no_markup() -> None:
    html = page_html().decode("utf-8")
    # Nothing is loaded from elsewhere: no src, no <link>, no CSS url() or @import to
    # another origin. The one absolute address is the link (navigation, not a resource)
    # from each member's id to that member's own status page.
    assert not re.search(r"src\s*=\s*[\"']?(https?:)?//", html), "no external resource"
    assert not re.search(r"<link[^>]*href", html) and "@import" not in html
    assert not re.search(r"url\(\s*[\"']?(https?:)?//", html)
    absolute = re.findall(r"href\s*=\s*[^;\n]*(?:https?:)?//[^;\n]*", html)
    assert absolute == ['href = "http://" + m.http + "/"'], absolute
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html
    assert "document.write" not in html and "eval(" not in html
    for element_id in ("leader", "term", "members", "names", "events", "search", "node"):
        assert f'id="{element_id}"' in html


def test_the_csp_allows_exactly_the_inline_script_and_style() -> None:
    csp = content_security_policy()
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    script = re.search(r"script-src ([^;]+);", csp)
    style = re.search(r"style-src ([^;]+);", csp)
    assert script and style
    assert len(script.group(1).split()) == 1 and len(style.group(1).split()) == 1
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


# -- HTTP routes -----------------------------------------------------------------------


Response = tuple[int, dict[str, str], bytes]


async def fetch(address: str, request: bytes) -> Response:
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 5.0)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def serve(requests: list[bytes], **routes: Any) -> list[Response]:
    """Start a real ``HttpServer`` on a free loopback port, send each raw request on its
    own connection, and return the answers."""
    fields: dict[str, Any] = {
        "registry": CollectorRegistry(),
        "healthy": lambda: True,
        "ready": lambda: (True, "ready"),
        "status": lambda: {"node": "n1", "quorum": True},
    }
    fields.update(routes)

    async def main() -> list[Response]:
        server = HttpServer(Routes(**fields))
        await server.start("127.0.0.1:0")
        try:
            return [await fetch(server.address, r) for r in requests]
        finally:
            await server.close()

    return asyncio.run(main())


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_routes_serve_the_page_status_names_and_events() -> None:
    asked: list[NamesQuery] = []

    def names(query: NamesQuery) -> dict[str, object]:
        asked.append(query)
        return {"total": 0, "names": []}

    def events() -> list[dict[str, object]]:
        return [{"kind": "leader", "name": "n2"}]

    page, root_json, names_ok, names_bad, evs, missing, post = serve(
        [
            get("/"),
            get("/status"),
            get("/status/names?q=room&limit=7&offset=2"),
            get("/status/names?limit=nope"),
            get("/status/events"),
            get("/nope"),
            b"POST /status HTTP/1.1\r\n\r\n",
        ],
        names=names,
        events=events,
    )
    assert page[0] == 200 and page[1]["Content-Type"] == "text/html; charset=utf-8"
    assert page[2] == page_html()
    assert page[1]["Content-Security-Policy"] == content_security_policy()
    assert root_json[0] == 200 and json.loads(root_json[2]) == {"node": "n1", "quorum": True}
    assert root_json[1]["Cache-Control"] == "no-store"
    assert names_ok[0] == 200 and json.loads(names_ok[2]) == {"total": 0, "names": []}
    assert asked == [NamesQuery(q="room", limit=7, offset=2)], "the bad query never got there"
    assert names_bad[0] == 400
    assert names_bad[2] == b"bad query: limit must be an integer \xe2\x89\xa5 1 (got 'nope')\n"
    assert evs[0] == 200 and json.loads(evs[2]) == {"events": [{"kind": "leader", "name": "n2"}]}
    assert missing[0] == 404
    for route in (b"/status.html", b"/status/names", b"/status/events", b"/metrics"):
        assert route in missing[2]
    assert post[0] == 405


def test_a_failing_status_callback_answers_500_and_the_server_keeps_serving() -> None:
    calls = 0

    def status() -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        return {"node": "n1"}

    failed, fine = serve([get("/status"), get("/status")], status=status)
    assert failed[0] == 500 and failed[2] == b"internal error (RuntimeError)\n"
    assert fine[0] == 200 and json.loads(fine[2]) == {"node": "n1"}


def test_without_a_names_callback_the_route_is_absent() -> None:
    ((code, _, body),) = serve([get("/status/names?q=x")])
    assert code == 404 and body.startswith(b"not found: try /")
