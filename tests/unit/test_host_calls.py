"""A worker host's own call port (``registry/node/hosts/calls.py``) on a real gRPC server
with a real ``WorkerRuntime``: the refusals its inline checks make (rules 2 and 5) are
precise, change nothing, and a refused or finished call gives its slot back."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import grpc
import grpc.aio

from registry.core.replica import Start
from registry.core.state import Activation, StartReason
from registry.node.hosts.calls import HostCalls, serve
from registry.v1 import host_pb2
from registry.v1 import registry_pb2 as pb
from registry.worker import Worker, WorkerRuntime

OPEN = asyncio.Event()


class Gated(Worker):
    """Answers once ``OPEN`` is set (so calls can be held in flight)."""

    kind: ClassVar[str] = "gated"

    async def handle_call(self, payload: bytes) -> bytes:
        await OPEN.wait()
        return payload


class _Reports:
    def handoff_done(self, name: str, token: int, state: bytes | None) -> None: ...
    def handoff_ignored(self, name: str, token: int) -> None: ...
    def fatal(self, reason: str) -> None: ...


def _reason(exc: grpc.aio.AioRpcError) -> str:
    return str(dict(exc.trailing_metadata() or ()).get("registry-reason", ""))


async def _refusal(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), _reason(exc)
    raise AssertionError("the call was not refused")


async def _main() -> None:
    global OPEN
    OPEN = asyncio.Event()
    runtime = WorkerRuntime(
        node="n1", kinds={"gated": Gated}, reports=_Reports(), lease_holds=lambda: True
    )
    spec = Activation(name="g", kind="gated", args=b"", token=7, reason=StartReason.NEW, state=None)
    runtime.apply([Start(activation=spec)])
    init = host_pb2.HostInit(
        node="n1", host=0, call_bind="127.0.0.1", max_payload_bytes=64, max_rpcs=2,
        max_rpcs_per_client=2,
    )  # fmt: skip
    calls = HostCalls(runtime, init)
    server, port = await serve(calls, init)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            method = "/registry.v1.Registry/Call"
            raw: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
            call = channel.unary_unary(
                method,
                request_serializer=pb.CallRequest.SerializeToString,
                response_deserializer=pb.CallResponse.FromString,
            )
            # A request that does not parse (a truncated field): INVALID_ARGUMENT.
            assert await _refusal(raw(b"\x0a\x05ab", timeout=5)) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "MALFORMED",
            )
            big = pb.CallRequest(name="g", payload=b"x" * 65)
            assert await _refusal(call(big, timeout=5)) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "PAYLOAD_TOO_LARGE",
            )
            # Two calls in flight take both slots; a third is refused, not queued.
            held = [
                asyncio.ensure_future(call(pb.CallRequest(name="g", payload=b"%d" % i), timeout=5))
                for i in range(2)
            ]
            async with asyncio.timeout(5):
                while calls.limits.rpcs < 2:
                    await asyncio.sleep(0.005)
            third = call(pb.CallRequest(name="g", payload=b"3"), timeout=5)
            assert await _refusal(third) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_RPCS")
            OPEN.set()
            replies = await asyncio.gather(*held)
            assert [(r.payload, r.node, r.token) for r in replies] == [
                (b"0", "n1", 7),
                (b"1", "n1", 7),
            ]
            # Every slot came back: the refused calls and the answered ones.
            assert (calls.limits.rpcs, dict(calls.limits.per_client)) == (0, {})
            reply = await call(pb.CallRequest(name="g", payload=b"again"), timeout=5)
            assert reply.payload == b"again"
    finally:
        await server.stop(0)
        await runtime.shutdown()


def test_inline_checks_refuse_precisely_and_give_slots_back() -> None:
    asyncio.run(_main())
