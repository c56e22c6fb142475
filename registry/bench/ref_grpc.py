"""Reference: a raw ``grpc.aio`` unary echo, the Python gRPC limit on this machine.

The server runs in its own process (``python -m registry.bench.ref_grpc``): one
``grpc.aio`` server with a generic handler that returns the request bytes (no protobuf,
no registry). It prints its port on stdout and exits when its stdin closes, so it never
outlives the bench. The client is the same load generator as our ``call`` bench, with the
same 16-byte payload, at concurrency 1 and ``concurrency``.

The ``call`` rows reach ``nodes`` worker hosts (one per node in the bench's clusters),
so consecutive calls at c=1 mostly go to another process over another channel, which the
echo rows never do. After them (the reference itself unchanged), ``nodes - 1`` more echo
servers start and one more row, "over N processes", sends each call to a server drawn at
random (as the names' placement spreads calls over the hosts): what that switching costs
plain gRPC on this machine. It has a ratio to the one-server row and no target; the
targets stay on the one-server rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio

from registry.bench.load import Latency, Progress, run_lanes
from registry.bench.params import Params
from registry.bench.results import SectionResult
from registry.testing.local_cluster import CHANNEL_OPTIONS, PACKAGE_ROOT

METHOD = "/bench.Echo/Echo"
PAYLOAD = b"0123456789abcdef"
"""Every call and echo of the bench carries these 16 bytes."""
START_TIMEOUT_S = 30.0
SPREAD_SEED = 13


async def run(params: Params, progress: Progress, out: SectionResult) -> None:
    progress.step("raw grpc.aio echo: starting the server process")
    servers: list[subprocess.Popen[bytes]] = []
    rows: dict[str, Latency] = {}
    try:
        address = await start_server(servers)
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            call = caller(channel)
            for _ in range(min(params.ops, 200)):  # connect and warm up
                await call(0)
            for concurrency in (1, params.concurrency):
                progress.step(f"raw grpc.aio echo c={concurrency} ({params.ops:,})")
                rows[f"echo_c{concurrency}"] = await run_lanes(
                    call, params.ops, concurrency, progress, budget_s=params.budget_s
                )
        rows["echo_spread_c1"] = await _spread(params, progress, servers, address)
    finally:
        for server in servers:
            stop(server)
    for concurrency in (1, params.concurrency):
        row = rows[f"echo_c{concurrency}"]
        out.add(
            f"echo_c{concurrency}_p50_ms", f"raw echo c={concurrency} p50", row.p50_s * 1e3, "ms"
        )
        out.add(f"echo_c{concurrency}_per_s", f"raw echo c={concurrency}", row.per_s, "calls/s")
    spread = rows["echo_spread_c1"]
    label = f"raw echo c=1 over {params.nodes} processes"
    out.add("echo_spread_c1_p50_ms", f"{label} p50", spread.p50_s * 1e3, "ms")
    out.add("echo_spread_c1_per_s", label, spread.per_s, "calls/s")
    out.details.update(
        spread_processes=params.nodes,
        payload_bytes=len(PAYLOAD),
        grpc_version=grpc.__version__,
        rows={k: v.to_json() for k, v in rows.items()},
    )


async def _spread(
    params: Params, progress: Progress, servers: list[subprocess.Popen[bytes]], first: str
) -> Latency:
    """c=1 over ``params.nodes`` echo servers, each call to one drawn at random."""
    progress.step(f"raw grpc.aio echo c=1 over {params.nodes} processes ({params.ops:,})")
    addresses = [first] + [await start_server(servers) for _ in range(params.nodes - 1)]
    async with contextlib.AsyncExitStack() as stack:
        calls = []
        for address in addresses:
            channel = grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
            await stack.enter_async_context(channel)
            calls.append(caller(channel))
        rng = random.Random(SPREAD_SEED)
        order = [rng.randrange(len(calls)) for _ in range(params.ops)]
        for i in range(min(params.ops, 200)):  # connect and warm up
            await calls[i % len(calls)](i)
        return await run_lanes(
            lambda i: calls[order[i]](i), params.ops, 1, progress, budget_s=params.budget_s
        )


def caller(channel: grpc.aio.Channel) -> Callable[[int], Awaitable[bytes]]:
    echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

    async def call(_i: int) -> bytes:
        reply = await echo(PAYLOAD, timeout=10)
        if reply != PAYLOAD:
            raise RuntimeError(f"echo answered {reply!r}")
        return reply

    return call


async def start_server(servers: list[subprocess.Popen[bytes]]) -> str:
    """Start one echo server process (kept in ``servers``); its address."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [sys.executable, "-m", "registry.bench.ref_grpc"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    servers.append(server)
    assert server.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), START_TIMEOUT_S)
    if not line.strip().isdigit():
        raise RuntimeError(f"the echo server did not start (said {line!r})")
    return f"127.0.0.1:{int(line)}"


def stop(server: subprocess.Popen[bytes]) -> None:
    if server.stdin is not None:
        server.stdin.close()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


# -- the server process -----------------------------------------------------------------


async def _echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    return request


async def _serve() -> None:
    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await asyncio.to_thread(sys.stdin.read)  # until the bench closes our stdin
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(_serve())
