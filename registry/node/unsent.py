"""Forwards that never left: a node's cached channel to a peer that just restarted.

A node keeps one gRPC channel per peer for forwarded calls, casts and writes. When the
peer dies, the channel's connection attempts fail and it backs off (at most
``max_reconnect_backoff_ms``, 1 s, in ``CHANNEL_OPTIONS``, plus gRPC's jitter). A
request made while the channel waits out that backoff fails at once with UNAVAILABLE
"failed to connect", even if the peer is back by then: nothing was sent. Such a request
is safe to send again, so it waits, a bounded time, for the channel and is sent once
more (a chat example's ``multi_call`` just after the room's node restarted answered
"Connection refused" without this)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
import grpc.aio

T = TypeVar("T")

NEVER_SENT = "failed to connect to all addresses"
"""How gRPC's UNAVAILABLE detail starts when no connection was made, so the request was
not sent (a peer's or a worker's own error never starts so: those are relayed with
their own words)."""
RECONNECT_WAIT_S = 1.5
"""How long an unsent forward waits for its channel: the longest backoff (1 s) with
gRPC's 20 % jitter, and a margin."""


def never_sent(exc: grpc.aio.AioRpcError) -> bool:
    """The request failed before any connection carried it."""
    details = exc.details() or ""
    return exc.code() is grpc.StatusCode.UNAVAILABLE and details.startswith(NEVER_SENT)


async def channel_back(channel: grpc.aio.Channel, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``channel`` to be READY; whether it is."""
    try:
        async with asyncio.timeout(seconds):
            await channel.channel_ready()  # asks it to connect, then waits for READY
    except TimeoutError:
        return False
    return True


async def send_again_if_unsent(
    channel: grpc.aio.Channel,
    send: Callable[[], Awaitable[T]],
    seconds: float = RECONNECT_WAIT_S,
) -> T:
    """``send()``; if that failed without sending, once more when ``channel`` is back
    (within ``seconds``). Any other failure, or a channel still down, raises as is."""
    try:
        return await send()
    except grpc.aio.AioRpcError as exc:
        if not never_sent(exc) or not await channel_back(channel, seconds):
            raise
    return await send()
