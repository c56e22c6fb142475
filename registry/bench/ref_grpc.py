"""Reference: a raw ``grpc.aio`` unary echo, the Python gRPC limit on this machine.

The server runs in its own process (``python -m registry.bench.ref_grpc``): one
``grpc.aio`` server with a generic handler that returns the request bytes (no protobuf,
no registry). It prints its port on stdout and exits when its stdin closes, so it never
outlives the bench. The client is the same load generator as our ``call`` bench, with the
same 16-byte payload, at concurrency 1 and ``concurrency``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import grpc
import grpc.aio

from registry.bench.load import Latency, Progress, run_lanes
from registry.bench.lookups import PAYLOAD
from registry.bench.params import Params
from registry.bench.results import SectionResult
from registry.testing.local_cluster import CHANNEL_OPTIONS, PACKAGE_ROOT

METHOD = "/bench.Echo/Echo"
START_TIMEOUT_S = 30.0


async def run(params: Params, progress: Progress, out: SectionResult) -> None:
    progress.step("raw grpc.aio echo: starting the server process")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        [sys.executable, "-m", "registry.bench.ref_grpc"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(server.stdout.readline), START_TIMEOUT_S)
        if not line.strip().isdigit():
            raise RuntimeError(f"the echo server did not start (said {line!r})")
        address = f"127.0.0.1:{int(line)}"
        rows: dict[str, Latency] = {}
        async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
            echo: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)

            async def call(_i: int) -> Any:
                reply = await echo(PAYLOAD, timeout=10)
                if reply != PAYLOAD:
                    raise RuntimeError(f"echo answered {reply!r}")
                return reply

            for _ in range(min(params.ops, 200)):  # connect and warm up
                await call(0)
            for concurrency in (1, params.concurrency):
                progress.step(f"raw grpc.aio echo c={concurrency} ({params.ops:,})")
                rows[f"echo_c{concurrency}"] = await run_lanes(
                    call, params.ops, concurrency, progress, budget_s=params.budget_s
                )
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
    for concurrency in (1, params.concurrency):
        row = rows[f"echo_c{concurrency}"]
        out.add(
            f"echo_c{concurrency}_p50_ms", f"raw echo c={concurrency} p50", row.p50_s * 1e3, "ms"
        )
        out.add(f"echo_c{concurrency}_per_s", f"raw echo c={concurrency}", row.per_s, "calls/s")
    out.details.update(
        payload_bytes=len(PAYLOAD),
        grpc_version=grpc.__version__,
        rows={k: v.to_json() for k, v in rows.items()},
    )


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
