"""The status page: its HTML, and the ``/status/names`` search behind it.

The page (``static/status.html``) is one self-contained file — inline CSS and vanilla
JS, nothing fetched from elsewhere, since nodes often run where there is no internet. It
polls ``/status`` and ``/status/names`` and builds the DOM with ``textContent`` only:
names are user data and may contain markup. The server adds a Content-Security-Policy
that allows exactly the page's own inline script (by hash) and requests to its own
origin, so even a mistake there could not run injected script.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import heapq
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from urllib.parse import parse_qs

from registry.core.view import RegistryReader

MAX_NAMES_LIMIT = 1000
"""The most names one ``/status/names`` answer lists; a larger ``limit`` is capped."""
DEFAULT_NAMES_LIMIT = 100
MAX_QUERY_CHARS = 1024


class BadQuery(ValueError):
    """A ``/status/names`` query string that cannot be answered; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NamesQuery:
    q: str = ""
    """Case-insensitive substring of the names to list; empty lists every name."""
    limit: int = DEFAULT_NAMES_LIMIT
    """At most this many names (1 to ``MAX_NAMES_LIMIT``)."""
    offset: int = 0
    """Skip this many matches first (they are sorted by name)."""


def parse_names_query(query: str) -> NamesQuery:
    """Parse ``q=…&limit=…&offset=…``; raise ``BadQuery`` naming what is wrong."""
    if len(query) > MAX_QUERY_CHARS:
        raise BadQuery(f"query string longer than {MAX_QUERY_CHARS} characters")
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError:
        raise BadQuery("query string is not valid UTF-8 once percent-decoded") from None
    unknown = sorted(set(params) - {"q", "limit", "offset"})
    if unknown:
        raise BadQuery(f"unknown parameter {unknown[0]!r}; known: q, limit, offset")
    for key, values in params.items():
        if len(values) > 1:
            raise BadQuery(f"parameter {key!r} given {len(values)} times")
    limit = _integer(params, "limit", DEFAULT_NAMES_LIMIT, minimum=1)
    offset = _integer(params, "offset", 0, minimum=0)
    return NamesQuery(q=params.get("q", [""])[0], limit=min(limit, MAX_NAMES_LIMIT), offset=offset)


def _integer(params: dict[str, list[str]], key: str, default: int, *, minimum: int) -> int:
    if key not in params:
        return default
    raw = params[key][0]
    if not re.fullmatch(r"[0-9]{1,9}", raw) or int(raw) < minimum:
        raise BadQuery(f"{key} must be an integer ≥ {minimum} (got {raw!r})")
    return int(raw)


def names_page(
    state: RegistryReader,
    query: NamesQuery,
    address_of: Callable[[str], str | None],
    readable: Callable[[str], bool] = lambda _name: True,
) -> dict[str, object]:
    """The names matching ``query`` (sorted by name), with where each one runs.

    One pass over the names, then a heap keeps the first ``offset + limit`` matches: a
    search costs O(names · log(page)), never a full sort, and the answer stays small.
    """
    needle = query.q.casefold()
    matches = [
        name
        for name, record in state.names.items()
        if not record.unregistering and needle in name.casefold() and readable(name)
    ]
    first = heapq.nsmallest(query.offset + query.limit, matches)
    listed = []
    for name in first[query.offset :]:
        record = state.names[name]
        owner = record.holder
        placed = state.owner(name) or ""
        listed.append(
            {
                "name": name,
                "owner": owner,
                "owner_address": (address_of(owner) or "") if owner else "",
                "token": record.token,
                "kind": record.spec.kind,
                "reason": record.reason.value,
                "state": "running" if owner else "waiting",
                "moving_to": placed if owner and placed and placed != owner else "",
            }
        )
    return {
        "q": query.q,
        "offset": query.offset,
        "limit": query.limit,
        "total": len(matches),
        "names": listed,
    }


@functools.cache
def page_html() -> bytes:
    """The page, read once from the package."""
    return resources.files("registry.node").joinpath("static", "status.html").read_bytes()


@functools.cache
def content_security_policy() -> str:
    """Allow the page's own inline script and style (by hash) and same-origin fetches."""
    html = page_html().decode("utf-8")
    scripts = re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    styles = re.findall(r"<style>(.*?)</style>", html, flags=re.DOTALL)

    def hashes(blocks: list[str]) -> str:
        return " ".join(
            "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
            for b in blocks
        )

    return (
        f"default-src 'none'; script-src {hashes(scripts)}; style-src {hashes(styles)}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
