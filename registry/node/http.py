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
    NamesQuery,
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
    names: Callable[[NamesQuery], dict[str, object]] | None = None
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
        try:
            reply = self._route(path, query)
        except Exception as exc:  # a status callback failed: say so, keep serving
            log.exception("HTTP %s failed", path)
            reply = (500, "text/plain", f"internal error ({type(exc).__name__})\n".encode(), ())
        await self._reply(writer, reply)

    def _route(self, path: str, query: str) -> Reply:
        routes = self._routes
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

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: Reply) -> None:
        status, ctype, body, headers = reply
        reason = {
            200: "OK",
            400: "Bad Request",
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


def _json(value: object) -> Reply:
    body = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
    return 200, "application/json", body, ()
