"""The status page in a real headless Chromium against a real 3-node cluster.

Chromium (Debian's ``/usr/bin/chromium``) is driven over the DevTools protocol on a pipe
(``page_browser.py``, stdlib only). Each check reads the live DOM and compares it with
what the cluster itself says — ``/status`` JSON and ``WhereIs`` over gRPC — polling with
a deadline, since the page fills itself in asynchronously and refreshes every 2 s.

Without the binary the tests skip, unless ``CI=true`` (CI installs it): then they fail.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster, register_until, wait_for
from tests.observability.page_browser import CHROMIUM, Browser, Page
from tests.system_tools import require_tool

NAMES = ("page/alpha", "page/beta", "page/<b>gamma</b>", "other/delta")
"""One name is markup on purpose: names may hold any printable text, and the page must
show it as text."""
PAGE_TIMEOUT_S = 20.0
"""Bound for the page to show what the cluster says (it refreshes every 2 s)."""

ROWS = """
(() => {
  const rows = (id) => Array.from(document.querySelectorAll("#" + id + " tr"))
    .map((tr) => Array.from(tr.cells).map((td) => td.textContent));
  return {
    node: document.getElementById("node").textContent,
    leader: document.getElementById("leader").textContent,
    term: document.getElementById("term").textContent,
    members: rows("members"),
    names: rows("names"),
    count: document.getElementById("names-count").textContent,
    events: rows("events"),
    search: document.getElementById("search").value,
    conn: document.getElementById("conn").textContent,
    refreshes: Number(document.body.dataset.refreshes || 0),
    bold: document.querySelectorAll("#names b, #events b").length,
    links: Array.from(document.querySelectorAll("#members tr a")).map((a) => a.href),
  };
})()
"""
"""What the page shows, as JSON: the text of every cell of the members, names and events
tables, and the summary fields."""


def _chromium() -> str:
    return require_tool(CHROMIUM, "chromium")


def placed(c: LocalCluster, name: str, via: str | None = None) -> tuple[str, int]:
    """Where ``name`` runs, once it has been placed (bounded wait)."""
    return wait_for(f"{name!r} to be placed", lambda: c.owner(name, via=via), timeout=10)


@pytest.fixture(scope="module")
def page_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A 3-node cluster with ``NAMES`` registered (and placed), for the whole module."""
    _chromium()  # skip before starting nodes for nothing
    c = LocalCluster(tmp_path_factory.mktemp("page"), 3, preset="local")
    try:
        c.start(timeout=30.0)
        for name in NAMES:
            register_until(c, "n1", pb.NameSpec(name=name, kind="counter"), timeout=15)
        for name in NAMES:
            placed(c, name)
        yield c
        assert not c.crashed(), f"node process(es) exited on their own: {c.crashed()}"
    except BaseException:
        print(c.log_tails())
        raise
    finally:
        c.close()


@pytest.fixture
def page_browser() -> Iterator[Browser]:
    browser = Browser(_chromium())
    try:
        yield browser
    finally:
        browser.close()


def url(c: LocalCluster, node: str, query: str = "") -> str:
    return f"http://{c.nodes[node].http_addr}/{query}"


def shown(page: Page) -> dict[str, Any]:
    value = page.evaluate(ROWS)
    assert isinstance(value, dict)
    return value


def wait_shown(page: Page, what: str, accept: Any) -> dict[str, Any]:
    value = page.wait_for(what, ROWS, lambda v: isinstance(v, dict) and accept(v), PAGE_TIMEOUT_S)
    assert isinstance(value, dict)
    return value


def names_shown(view: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """name → (owner, token) as the names table shows them."""
    return {row[0]: (row[1], int(row[2])) for row in view["names"]}


def type_search(page: Page, text: str) -> None:
    """Put ``text`` in the search box the way typing does (an ``input`` event)."""
    page.evaluate(
        "(() => { const box = document.getElementById('search');"
        f" box.value = {json.dumps(text)}; box.dispatchEvent(new Event('input')); }})()"
    )


def a_follower(c: LocalCluster) -> str:
    leader = c.http_json("n1")["leader"]
    return next(n for n in c.ids if n != leader)


def test_the_page_shows_the_cluster_as_status_and_whereis_report_it(
    page_cluster: LocalCluster, page_browser: Browser
) -> None:
    c = page_cluster
    node = a_follower(c)  # the leader shown must be another node's id
    page = page_browser.open(url(c, node))

    def matches_status(view: dict[str, Any]) -> bool:
        status = c.http_json(node)
        return bool(view["leader"] == status["leader"] and view["term"] == str(status["term"]))

    view = wait_shown(page, "the leader and term of /status", matches_status)
    status = c.http_json(node)
    assert view["node"] == node
    assert view["leader"] != node and view["leader"] in c.ids
    assert view["conn"].startswith("updated "), view["conn"]

    members = {row[0]: row for row in view["members"]}
    assert sorted(members) == sorted(c.ids), "one row per member"
    for member in status["members"]:
        row = members[member["id"]]
        assert row[1] == member["address"]
        assert row[3] == "up"
        assert row[4] == ("leader" if member["id"] == status["leader"] else "voter")
        assert row[5] == str(member["incarnation"])
    assert members[node][7].startswith("held, "), "this node knows its own lease"
    # Members link to their own status pages, as far as this node's peer streams told it:
    # a follower talks to the leader (and itself), the leader to every member.
    link = {n: f"http://{c.nodes[n].http_addr}/" for n in c.ids}
    here = {node, view["leader"]}
    view = wait_shown(page, "links to itself and the leader", lambda v: len(v["links"]) >= 2)
    assert {link[n] for n in here} <= set(view["links"]) <= set(link.values()), view["links"]
    leader_page = page_browser.open(url(c, status["leader"]))
    every = wait_shown(leader_page, "a link per member", lambda v: len(v["links"]) == len(c.ids))
    assert sorted(every["links"]) == sorted(link.values())

    def as_whereis(v: dict[str, Any]) -> bool:
        # Polled, not read once: a fence on a loaded CI machine (local timing) gave
        # names new tokens between the page's last poll and a single WhereIs.
        where = {name: c.owner(name, via=node) for name in NAMES}
        return len(v["names"]) == len(NAMES) and names_shown(v) == where

    view = wait_shown(page, "every name, owner and token as WhereIs answers", as_whereis)
    assert view["count"] == f"showing 1–{len(NAMES)} of {len(NAMES)}"
    assert "page/<b>gamma</b>" in names_shown(view), "markup in a name shows as text"
    assert view["bold"] == 0, "and never becomes an element"
    per_node = sum(int(row[6]) for row in view["members"])
    assert per_node == len(NAMES), "names per node add up"

    kinds = {row[1] for row in view["events"]}
    assert {"leader", "member"} <= kinds, view["events"]
    leader_events = [row for row in view["events"] if row[1] == "leader"]
    assert leader_events[0][2] == status["leader"], "the newest leader event names the leader"


def test_a_search_from_the_url_shows_only_matching_names(
    page_cluster: LocalCluster, page_browser: Browser
) -> None:
    c = page_cluster
    node = c.ids[0]
    query = "?" + urllib.parse.urlencode({"q": "PAGE/"})
    page = page_browser.open(url(c, node, query))
    view = wait_shown(page, "the names matching 'PAGE/'", lambda v: v["count"] != "…")
    expected = sorted(n for n in NAMES if "page/" in n)
    assert view["search"] == "PAGE/", "the search box is filled in from ?q="
    assert sorted(names_shown(view)) == expected
    assert view["count"] == "showing 1–3 of 3 matching “PAGE/”"
    server = c.http_json(node, "/status/names?q=PAGE%2F")
    assert sorted(n["name"] for n in server["names"]) == expected

    # Typing in the box searches again, without reloading the page.
    page.evaluate("window.notReloaded = true")
    type_search(page, "delta")
    view = wait_shown(page, "only 'other/delta'", lambda v: len(v["names"]) == 1)
    assert sorted(names_shown(view)) == ["other/delta"]
    assert page.evaluate("window.notReloaded") is True
    assert page.evaluate("location.search") == "?q=delta", "the URL keeps the search"

    type_search(page, "no such name")
    view = wait_shown(page, "no names", lambda v: not v["names"])
    assert view["count"] == "showing 0–0 of 0 matching “no such name”"


def test_the_page_refreshes_by_itself(page_cluster: LocalCluster, page_browser: Browser) -> None:
    c = page_cluster
    node = c.ids[1]
    page = page_browser.open(url(c, node))
    first = wait_shown(page, "the names", lambda v: len(v["names"]) >= len(NAMES))
    page.evaluate("window.notReloaded = true")
    late = "page/late"
    register_until(c, node, pb.NameSpec(name=late, kind="echo"), timeout=15)
    owner = placed(c, late, via=node)
    view = wait_shown(page, f"{late!r} to appear", lambda v: late in names_shown(v))
    assert names_shown(view)[late] == owner
    assert page.evaluate("window.notReloaded") is True, "it appeared without a reload"
    assert view["refreshes"] > first["refreshes"]
    c.stub(node).Unregister(pb.UnregisterRequest(name=late), timeout=5)
    wait_shown(page, f"{late!r} to disappear", lambda v: late not in names_shown(v))


def test_the_json_the_page_reads_answers_bad_queries_with_400(
    page_cluster: LocalCluster,
) -> None:
    code, ctype, body = page_cluster.http_get("n1", "/status/names?limit=lots")
    assert (code, ctype) == (400, "text/plain")
    assert body.decode() == "bad query: limit must be an integer ≥ 1 (got 'lots')\n"
    code, _, body = page_cluster.http_get("n1", "/status/events")
    assert code == 200
    events = json.loads(body)["events"]
    assert events and {"seq", "time", "kind", "name", "token", "detail"} <= set(events[0])


def test_the_page_says_when_its_node_is_gone_and_recovers_by_itself(
    page_cluster: LocalCluster, page_browser: Browser
) -> None:
    c = page_cluster
    node = c.ids[2]
    page = page_browser.open(url(c, node))
    wait_shown(page, "a first update", lambda v: v["conn"].startswith("updated "))
    c.kill(node)
    try:
        view = wait_shown(
            page, "the page to say the node is gone", lambda v: v["conn"].startswith("cannot")
        )
        assert "(retrying)" in view["conn"]
        assert len(view["members"]) == len(c.ids), "the last data stays on screen"
    finally:
        c.restart(node)
        c.wait_ready(30.0)
    view = wait_shown(page, "the page to recover", lambda v: v["conn"].startswith("updated "))
    assert view["node"] == node


LAYOUT = """
(() => {
  const lines = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const tops = Array.from(range.getClientRects()).map((r) => Math.round(r.top));
    return new Set(tops).size;
  };
  const box = (el) => el.getBoundingClientRect().width;
  const section = (id) => box(document.getElementById(id).closest("section"));
  const namesTable = document.getElementById("names").closest("table");
  return {
    inner: window.innerWidth,
    scroll: document.documentElement.scrollWidth,
    full: section("members"),
    names: section("names"),
    perNode: section("names-per-node"),
    headerLines: Array.from(document.querySelectorAll("th"))
      .map((th) => [th.textContent, lines(th)]),
    nameColumn: box(namesTable.querySelector("th")),
    rows: document.querySelectorAll("#names tr").length,
    times: Array.from(document.querySelectorAll("#events tr")).map((tr) => tr.cells[0].textContent),
  };
})()
"""


@pytest.mark.parametrize("width", [800, 1400, 1920])
def test_the_layout_fits_800_1400_and_1920_pixels(
    page_cluster: LocalCluster, page_browser: Browser, width: int
) -> None:
    """No sideways scrolling, every column header on one line, and the names table wide:
    the whole row when stacked (800 px), most of it beside the per-node counts (wider)."""
    page = page_browser.open(url(page_cluster, "n1"))
    page.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )
    view = page.wait_for(
        f"the names at {width} px",
        LAYOUT,
        lambda v: isinstance(v, dict) and v["inner"] == width and v["rows"] == len(NAMES),
        PAGE_TIMEOUT_S,
    )
    assert isinstance(view, dict)
    assert view["scroll"] <= width, "no horizontal scrolling"
    wrapped = [text for text, lines in view["headerLines"] if lines != 1]
    assert not wrapped, f"headers wrap at {width} px: {wrapped}"
    share = view["names"] / view["full"]  # the members table spans the whole row
    if width < 1000:
        assert share > 0.99, f"stacked: the names table takes the row ({share:.2f})"
    else:
        assert share > 0.65, f"the names table gets most of the width ({share:.2f})"
        assert view["perNode"] < view["names"]
    assert view["nameColumn"] >= 120, view["nameColumn"]
    assert view["times"], "events are shown"
    for text in view["times"]:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC", text), text
        shown_at = datetime.strptime(text, "%Y-%m-%d %H:%M:%S.%f UTC").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - shown_at).total_seconds()) < 3600, "absolute UTC time"
