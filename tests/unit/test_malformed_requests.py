"""``MalformedRequests``: a request protobuf cannot parse (a string field that is not
UTF-8, a truncated field) answers INVALID_ARGUMENT; good requests pass through untouched.
An in-process grpc.aio server on loopback with a stand-in servicer."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio

from registry.node.status import MalformedRequests
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc

NOT_UTF8 = b"\x0a\x03n\xff\xfe"  # field 1 (name/prefix), 3 bytes, not UTF-8
TRUNCATED = b"\x0a\x7fshort"


class _Servicer(registry_pb2_grpc.RegistryServicer):
    async def WhereIs(self, request: pb.WhereIsRequest, context: Any) -> pb.WhereIsResponse:
        return pb.WhereIsResponse(location=pb.Location(name=request.name))

    async def Watch(self, request: pb.WatchRequest, context: Any) -> Any:
        reset = pb.WatchEvent(kind=pb.WatchEvent.KIND_RESET, location=pb.Location(name="x"))
        yield pb.WatchEvents(events=[reset])


Errors = dict[str, tuple[grpc.StatusCode, str]]


async def _exercise() -> tuple[Errors, dict[str, object]]:
    server = grpc.aio.server(interceptors=[MalformedRequests()])
    registry_pb2_grpc.add_RegistryServicer_to_server(_Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    errors: Errors = {}
    good: dict[str, object] = {}
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            where: grpc.aio.UnaryUnaryMultiCallable[bytes, pb.WhereIsResponse]
            where = channel.unary_unary(
                "/registry.v1.Registry/WhereIs",
                request_serializer=None,
                response_deserializer=pb.WhereIsResponse.FromString,
            )
            watch: grpc.aio.UnaryStreamMultiCallable[bytes, pb.WatchEvents]
            watch = channel.unary_stream(
                "/registry.v1.Registry/Watch",
                request_serializer=None,
                response_deserializer=pb.WatchEvents.FromString,
            )
            for label, body in (("unary-utf8", NOT_UTF8), ("unary-truncated", TRUNCATED)):
                try:
                    good[label] = await where(body, timeout=5)
                except grpc.aio.AioRpcError as exc:
                    errors[label] = (exc.code(), exc.details() or "")
            reply = await where(pb.WhereIsRequest(name="ok").SerializeToString(), timeout=5)
            good["unary-good"] = reply.location.name
            try:
                good["stream-utf8"] = [e async for e in watch(NOT_UTF8, timeout=5)]
            except grpc.aio.AioRpcError as exc:
                errors["stream-utf8"] = (exc.code(), exc.details() or "")
            good["stream-good"] = [
                e.location.name async for batch in watch(b"", timeout=5) for e in batch.events
            ]
    finally:
        await server.stop(None)
    return errors, good


def test_undecodable_requests_are_invalid_argument() -> None:
    errors, good = asyncio.run(_exercise())
    assert good == {"unary-good": "ok", "stream-good": ["x"]}
    code, details = errors["unary-utf8"]
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert "malformed request" in details and "UTF-8" in details
    code, details = errors["unary-truncated"]
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "WhereIsRequest" in details
    code, details = errors["stream-utf8"]
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in details
