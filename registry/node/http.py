"""Per-node HTTP: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``, the status JSON
(``/status``, ``/status/names``, ``/status/events``) and the status page (``/``).

A handful of GET routes do not justify a web framework: this is a minimal HTTP/1.1 server
on ``asyncio.start_server`` (one request per connection, bounded header size, 5 s read
timeout). It keeps answering while the node has no quorum (G6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from registry.node.status_page import (
    BadQuery,
    content_security_policy,
    page_html,
    parse_names_query,
)

log = logging.getLogger("registry.node")
MAX_REQUEST_BYTES = 8192
ROUTES = (
    "/",
    "/status.html",
    "/status",
    "/status/names?q=&limit=&offset=",
    "/status/events",
    "/metrics",
    "/healthz",
    "/readyz",
)


@dataclass(frozen=True, slots=True)
class Routes:
    registry: CollectorRegistry
    healthy: Callable[[], bool]
    ready: Callable[[], tuple[bool, str]]
    status: Callable[[], dict[str, object]]
    names: Callable[..., dict[str, object]] | None = None
    reader: Callable[[str], Callable[[str], bool] | None] | None = None
    """With client auth on: the ``Authorization`` header → which names its token may
    read (``None``: no valid token). ``/status``, ``/status/names`` and
    ``/status/events`` then need a token; ``/metrics``, ``/healthz``, ``/readyz`` carry
    no names and stay open."""
    """Names matching a search, for ``/status/names`` (``None``: route answers 404)."""
    events: Callable[[], list[dict[str, object]]] | None = None
    """Recent events on this node, newest first, for ``/status/events``."""


Reply = tuple[int, str, bytes, tuple[tuple[str, str], ...]]
"""Status code, content type, body, extra headers."""


class HttpServer:
    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self._server: asyncio.Server | None = None

    async def start(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._server = await asyncio.start_server(self._handle, host, int(port))

    @property
    def address(self) -> str:
        """The ``host:port`` actually bound (the real port when started with port 0)."""
        assert self._server is not None, "not started"
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        if len(head) > MAX_REQUEST_BYTES:
            await self._reply(writer, (431, "text/plain", b"request header too large\n", ()))
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3:
            await self._reply(writer, (400, "text/plain", b"bad request\n", ()))
            return
        method, target, _version = parts
        path, _, query = target.partition("?")
        if method != "GET":
            await self._reply(writer, (405, "text/plain", b"only GET is supported\n", ()))
            return
        authorization = ""
        for line in head.split(b"\r\n")[1:]:
            key, _, value = line.decode("latin-1").partition(":")
            if key.strip().lower() == "authorization":
                authorization = value.strip()
        try:
            reply = self._route(path, query, authorization)
        except Exception as exc:  # a status callback failed: say so, keep serving
            log.exception("HTTP %s failed", path)
            reply = (500, "text/plain", f"internal error ({type(exc).__name__})\n".encode(), ())
        await self._reply(writer, reply)

    def _route(self, path: str, query: str, authorization: str = "") -> Reply:
        routes = self._routes
        if routes.reader is not None and path.startswith("/status") and path != "/status.html":
            readable = routes.reader(authorization)
            if readable is None:
                body = b"this needs a token with read permission: Authorization: Bearer <token>\n"
                return 401, "text/plain", body, (("WWW-Authenticate", "Bearer"),)
            return self._status_routes(path, query, readable)
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(routes.registry), ()
        if path == "/healthz":
            ok = routes.healthy()
            return (200 if ok else 503), "text/plain", b"ok\n" if ok else b"unhealthy\n", ()
        if path == "/readyz":
            ok, why = routes.ready()
            return (200 if ok else 503), "text/plain", (why + "\n").encode(), ()
        if path in ("/", "/status.html"):
            csp = (("Content-Security-Policy", content_security_policy()),)
            return 200, "text/html; charset=utf-8", page_html(), csp
        if path == "/status":
            return _json(routes.status())
        if path == "/status/names" and routes.names is not None:
            try:
                names_query = parse_names_query(query)
            except BadQuery as exc:
                return 400, "text/plain", f"bad query: {exc}\n".encode(), ()
            return _json(routes.names(names_query))
        if path == "/status/events" and routes.events is not None:
            return _json({"events": routes.events()})
        listing = " ".join(ROUTES)
        return 404, "text/plain", f"not found: try {listing}\n".encode(), ()

    def _status_routes(self, path: str, query: str, readable: Callable[[str], bool]) -> Reply:
        """The status JSON for a token: only the names it may read."""
        routes = self._routes
        if path == "/status":
            status = dict(routes.status())
            status["activations"] = [n for n in status.get("activations", []) if readable(n)]  # type: ignore[attr-defined]
            status["events"] = [e for e in status.get("events", []) if _visible(e, readable)]  # type: ignore[attr-defined]
            return _json(status)
        if path == "/status/names" and routes.names is not None:
            try:
                names_query = parse_names_query(query)
            except BadQuery as exc:
                return 400, "text/plain", f"bad query: {exc}\n".encode(), ()
            return _json(routes.names(names_query, readable))
        if path == "/status/events" and routes.events is not None:
            events = [e for e in routes.events() if _visible(e, readable)]
            return _json({"events": events})
        return 404, "text/plain", b"not found\n", ()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: Reply) -> None:
        status, ctype, body, headers = reply
        reason = {
            200: "OK",
            400: "Bad Request",
            401: "Unauthorized",
            404: "Not Found",
            405: "Method Not Allowed",
            431: "Request Header Fields Too Large",
            500: "Internal Server Error",
            503: "Service Unavailable",
        }[status]
        extra = "".join(f"{key}: {value}\r\n" for key, value in headers)
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            f"X-Content-Type-Options: nosniff\r\n{extra}Connection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()


def _visible(event: dict[str, object], readable: Callable[[str], bool]) -> bool:
    """Member and leader events carry no registered name; the others only readable ones."""
    return event.get("kind") in ("member", "leader") or readable(str(event.get("name", "")))


def _json(value: object) -> Reply:
    body = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
    return 200, "application/json", body, ()
