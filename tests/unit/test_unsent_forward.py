"""``send_again_if_unsent``: a forward through a cached channel whose peer restarted.

Real grpc.aio servers on loopback and a channel with the nodes' ``CHANNEL_OPTIONS``: the
first server answers, stops, the channel fails to reconnect (backing off), a second
server starts on the same port. A forward made then is sent again once the channel is
back; a request that reached a server and failed there is never sent twice. (A request
with a payload makes the stand-in answer UNAVAILABLE with the payload as its words.)"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest

from registry.node.transport import CHANNEL_OPTIONS
from registry.node.unsent import never_sent, send_again_if_unsent
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc


class _Servicer(registry_pb2_grpc.RegistryServicer):
    def __init__(self, label: str) -> None:
        self.label = label
        self.calls = 0

    async def Call(self, request: pb.CallRequest, context: Any) -> pb.CallResponse:
        self.calls += 1
        if request.payload:
            await context.abort(grpc.StatusCode.UNAVAILABLE, request.payload.decode())
        return pb.CallResponse(payload=request.payload, node=self.label)


async def _serve(label: str, port: int = 0) -> tuple[grpc.aio.Server, _Servicer, int]:
    server = grpc.aio.server()
    servicer = _Servicer(label)
    registry_pb2_grpc.add_RegistryServicer_to_server(servicer, server)
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, servicer, bound


async def _backing_off(stub: registry_pb2_grpc.RegistryStub) -> None:
    """Call until a request fails unsent: the channel tried to reconnect and failed."""
    for _ in range(200):  # bounded: ~2 s
        try:
            await stub.Call(pb.CallRequest(name="x", payload=b""), timeout=1.0)
        except grpc.aio.AioRpcError as exc:
            if never_sent(exc):
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the channel never failed to connect to the stopped server")


async def _restart_scenario() -> tuple[_Servicer, object]:
    """Run one forward right after the peer came back; its servicer and outcome."""
    first, _, port = await _serve("first")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=CHANNEL_OPTIONS) as ch:
        stub = registry_pb2_grpc.RegistryStub(ch)
        reply = await stub.Call(pb.CallRequest(name="x", payload=b""), timeout=5.0)
        assert reply.node == "first"
        await first.stop(None)
        await _backing_off(stub)
        second, servicer, _ = await _serve("second", port)
        try:
            request = pb.CallRequest(name="x", payload=b"")
            outcome: object
            try:
                outcome = await send_again_if_unsent(
                    ch, lambda: stub.Call(request, timeout=5.0), seconds=3.0
                )
            except grpc.aio.AioRpcError as exc:
                outcome = exc
            return servicer, outcome
        finally:
            await second.stop(None)


def test_a_forward_made_while_the_channel_backs_off_reaches_the_restarted_peer() -> None:
    servicer, outcome = asyncio.run(_restart_scenario())
    assert isinstance(outcome, pb.CallResponse), f"the forward failed: {outcome}"
    assert outcome.node == "second"
    assert servicer.calls == 1


@pytest.mark.parametrize(
    "refusal",
    [
        "the worker is stopping",
        "failed to connect to the database",
        "x failed to connect to all addresses",
    ],
)
def test_a_request_that_reached_the_peer_is_not_sent_again(refusal: str) -> None:
    """The peer answers UNAVAILABLE itself (a worker's words may even say "failed to
    connect"): that request was received, so it is never sent a second time."""

    async def main() -> tuple[_Servicer, grpc.aio.AioRpcError]:
        server, servicer, port = await _serve("up")
        target = f"127.0.0.1:{port}"
        try:
            async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
                stub = registry_pb2_grpc.RegistryStub(ch)
                request = pb.CallRequest(name="x", payload=refusal.encode())
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await send_again_if_unsent(ch, lambda: stub.Call(request, timeout=5.0))
                return servicer, caught.value
        finally:
            await server.stop(None)

    servicer, failure = asyncio.run(main())
    assert failure.code() is grpc.StatusCode.UNAVAILABLE
    assert failure.details() == refusal
    assert servicer.calls == 1, "a request the peer received must not be sent twice"


def test_a_peer_that_stays_down_fails_after_the_bounded_wait() -> None:
    async def main() -> grpc.aio.AioRpcError:
        server, _, port = await _serve("gone")
        await server.stop(None)
        target = f"127.0.0.1:{port}"
        async with grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) as ch:
            stub = registry_pb2_grpc.RegistryStub(ch)
            request = pb.CallRequest(name="x", payload=b"")
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await send_again_if_unsent(ch, lambda: stub.Call(request, timeout=5.0), seconds=0.5)
            waited = loop.time() - started
            assert waited < 5.0, f"the bounded wait took {waited:.1f} s"
            return caught.value

    failure = asyncio.run(main())
    assert never_sent(failure), failure.details()
