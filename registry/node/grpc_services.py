"""The standard gRPC services every node serves next to ``registry.v1.Registry``:
``grpc.health.v1.Health`` and server reflection, on the client port.

Rules:

1. Health follows readiness (``/readyz``): the overall service ``""`` and
   ``registry.v1.Registry`` are SERVING while this node holds its member lease, and
   NOT_SERVING otherwise (no quorum, fenced, still joining). A Kubernetes gRPC probe, an
   Envoy health check or ``grpc_health_probe`` therefore sends traffic only to nodes that
   can serve it. Other service names answer NOT_FOUND (the protocol's "unknown").
2. ``Check`` reads readiness when asked. For ``Watch`` streams it is re-read every
   ``POLL_S`` seconds and published only when it changes (one message per change).
3. On a graceful stop everything turns NOT_SERVING first and stays so.
4. Reflection lists the client API and these two services (``grpcurl -plaintext
   host:port list``); the internal peer protocol is not advertised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from registry.v1 import registry_pb2

__all__ = ["POLL_S", "REGISTRY_SERVICE", "StandardServices"]

POLL_S = 0.2
"""How often readiness is re-read for the health status, seconds."""
REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["Registry"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class StandardServices:
    """Health and reflection on one ``grpc.aio`` server; see the module docstring."""

    def __init__(self, server: grpc.aio.Server, ready: Callable[[], bool]) -> None:
        self._ready = ready
        self._health = _Health(self._publish)
        self._serving: bool | None = None
        self._task: asyncio.Task[None] | None = None
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = (
            REGISTRY_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        )
        reflection.enable_server_reflection(names, server)

    async def start(self) -> None:
        """Publish the current readiness, then follow it (rule 2)."""
        await self._publish()
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        """NOT_SERVING for good (rule 3); safe to call twice."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._health.enter_graceful_shutdown()

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            await self._publish()

    async def _publish(self) -> None:
        serving = self._ready()
        if serving == self._serving:
            return
        self._serving = serving
        status = _SERVING if serving else _NOT_SERVING
        for service in ("", REGISTRY_SERVICE):
            await self._health.set(service, status)


class _Health(health_aio.HealthServicer):
    """The stock servicer, with readiness published right before each ``Check``."""

    def __init__(self, refresh: Callable[[], Any]) -> None:
        super().__init__()
        self._refresh = refresh

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> health_pb2.HealthCheckResponse:
        await self._refresh()
        return await super().Check(request, context)
