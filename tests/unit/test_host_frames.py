"""The control ↔ worker-host framing: length-prefixed protobuf, batched per loop turn."""

from __future__ import annotations

import asyncio
import socket

import pytest

from registry.node.hosts.frames import (
    HEADER,
    MAX_FRAME_BYTES,
    FrameError,
    FrameReader,
    FrameWriter,
    encode,
    to_host,
)
from registry.node.hosts.process import HostProcess
from registry.v1 import host_pb2 as pb


def _call(i: int) -> pb.HostCommand:
    return pb.HostCommand(call=pb.HostCall(id=i, name=f"n{i}", payload=b"x" * i, deadline=1.5))


def test_reader_reassembles_frames_split_anywhere() -> None:
    frames = [to_host([_call(i), _call(i + 100)]) for i in range(5)]
    data = b"".join(encode(f) for f in frames)
    reader: FrameReader[pb.ToHost] = FrameReader(pb.ToHost)
    got = [m for i in range(len(data)) for m in reader.feed(data[i : i + 1])]
    assert got == frames


def test_reader_refuses_oversized_and_undecodable_frames() -> None:
    reader: FrameReader[pb.FromHost] = FrameReader(pb.FromHost)
    with pytest.raises(FrameError, match="over"):
        reader.feed(HEADER.pack(MAX_FRAME_BYTES + 1))
    reader = FrameReader(pb.FromHost)
    with pytest.raises(FrameError, match="undecodable"):
        reader.feed(HEADER.pack(3) + b"\xff\xff\xff")


def test_writer_sends_one_frame_per_loop_turn() -> None:
    async def main() -> list[pb.ToHost]:
        mine, theirs = socket.socketpair()
        mine.setblocking(False)
        errors: list[BaseException] = []
        writer = FrameWriter(mine, asyncio.get_running_loop(), to_host, errors.append)
        for i in range(200):
            writer.put(_call(i))
        await asyncio.sleep(0)
        writer.put(_call(999))
        await asyncio.sleep(0)
        mine.close()
        data = b""
        while chunk := theirs.recv(1 << 20):
            data += chunk
        theirs.close()
        assert not errors
        return FrameReader(pb.ToHost).feed(data)

    frames = asyncio.run(main())
    assert [len(f.commands) for f in frames] == [200, 1]
    assert [c.call.id for c in frames[0].commands] == list(range(200))


def test_live_tokens_of_a_host_cover_a_superseded_activation_still_ending() -> None:
    """What the control process fences on: a stop of token t is confirmed only when no
    code of the name with a token ≤ t runs any more, however the ends interleave."""
    host = HostProcess(0, lambda _host, _event: None)
    host.started("a", 5)
    assert host.live_below("a", 5) and not host.live_below("a", 4)
    host.started("a", 7)  # 5 was superseded and is still ending
    assert host.live == {"a": 7} and host.live_below("a", 6)
    host.ended("a", 5)
    assert not host.live_below("a", 6) and host.live_below("a", 7)
    host.started("a", 9)
    host.ended("a", 9)
    assert host.live == {"a": 7}
    host.ended("a", 7)
    assert host.live == {} and not host.live_below("a", 100)
