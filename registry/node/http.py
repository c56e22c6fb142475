"""Per-node HTTP: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``, ``/status``.

Four GET routes do not justify a web framework: this is a minimal HTTP/1.1 server on
``asyncio.start_server`` (one request per connection, bounded header size, 5 s read
timeout). It keeps answering while the node has no quorum (G6).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

MAX_REQUEST_BYTES = 8192


@dataclass(frozen=True, slots=True)
class Routes:
    registry: CollectorRegistry
    healthy: Callable[[], bool]
    ready: Callable[[], tuple[bool, str]]
    status: Callable[[], dict[str, object]]


class HttpServer:
    def __init__(self, routes: Routes) -> None:
        self._routes = routes
        self._server: asyncio.Server | None = None

    async def start(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self._server = await asyncio.start_server(self._handle, host, int(port))

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
            await self._reply(writer, 431, "text/plain", b"request header too large\n")
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split()
        if len(parts) != 3:
            await self._reply(writer, 400, "text/plain", b"bad request\n")
            return
        method, target, _version = parts
        path = target.split("?", 1)[0]
        if method != "GET":
            await self._reply(writer, 405, "text/plain", b"only GET is supported\n")
            return
        status, ctype, body = self._route(path)
        await self._reply(writer, status, ctype, body)

    def _route(self, path: str) -> tuple[int, str, bytes]:
        routes = self._routes
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(routes.registry)
        if path == "/healthz":
            ok = routes.healthy()
            return (200 if ok else 503), "text/plain", b"ok\n" if ok else b"unhealthy\n"
        if path == "/readyz":
            ok, why = routes.ready()
            return (200 if ok else 503), "text/plain", (why + "\n").encode()
        if path in ("/status", "/"):
            body = json.dumps(routes.status(), indent=2, sort_keys=True).encode() + b"\n"
            return 200, "application/json", body
        return 404, "text/plain", b"not found: try /metrics /healthz /readyz /status\n"

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes) -> None:
        reason = {
            200: "OK",
            400: "Bad Request",
            404: "Not Found",
            405: "Method Not Allowed",
            431: "Request Header Fields Too Large",
            503: "Service Unavailable",
        }[status]
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
