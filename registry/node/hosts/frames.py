"""Length-prefixed protobuf frames over a Unix socket, for both ends of a worker host.

A frame is a 4-byte big-endian length and that many bytes of one ``ToHost`` or
``FromHost`` message (``protos/registry/v1/host.proto``). Rules:

- Protobuf only: the control process parses what a host sends as data, never as code.
- A frame longer than ``MAX_FRAME_BYTES`` is a protocol error; the reader says so and
  the connection is dropped (the supervisor treats the host as crashed).
- Writers batch: everything queued during one turn of the event loop goes out as one
  frame in one ``send`` (a call costs no syscall of its own under load). A socket that
  is full is retried when writable; nothing is dropped or reordered.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable
from typing import Generic, TypeVar

from google.protobuf.message import DecodeError, Message

from registry.v1 import host_pb2

HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 256 << 20
"""Bound on one frame: 100k starts with args and handoff states fit many times over."""
READ_CHUNK = 1 << 18

M = TypeVar("M", bound=Message)


class FrameError(Exception):
    """The peer broke the framing or sent bytes that do not parse."""


class FrameReader(Generic[M]):
    """Turns received bytes into messages of one type (``feed`` as bytes arrive)."""

    def __init__(self, message_type: type[M]) -> None:
        self._type = message_type
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[M]:
        buffer = self._buffer
        buffer += data
        out: list[M] = []
        offset = 0
        size = len(buffer)
        while size - offset >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer, offset)
            if length > MAX_FRAME_BYTES:
                raise FrameError(f"frame of {length} bytes is over {MAX_FRAME_BYTES}")
            end = offset + HEADER.size + length
            if end > size:
                break
            message = self._type()
            try:
                message.ParseFromString(bytes(buffer[offset + HEADER.size : end]))
            except DecodeError as exc:
                raise FrameError(f"undecodable frame: {exc}") from None
            out.append(message)
            offset = end
        if offset:
            del buffer[:offset]
        return out


def encode(message: Message) -> bytes:
    body = message.SerializeToString()
    return HEADER.pack(len(body)) + body


class FrameWriter:
    """Queues commands (or events) and sends them as one frame per loop turn.

    ``make_frame(items)`` builds the message for a batch; the socket must be
    non-blocking. All methods run on the event loop.
    """

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        make_frame: Callable[[list[object]], Message],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._sock = sock
        self._loop = loop
        self._make = make_frame
        self._on_error = on_error
        self._items: list[object] = []
        self._out = bytearray()
        self._scheduled = False
        self._waiting_writable = False
        self.closed = False

    def put(self, item: object) -> None:
        if self.closed:
            return
        self._items.append(item)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def flush(self) -> None:
        """Send what is queued now, not at the end of this loop turn (an acknowledgement
        must leave before a worker that may block the loop gets to run)."""
        self._flush()

    def _flush(self) -> None:
        self._scheduled = False
        if self.closed:
            return
        if self._items:
            items, self._items = self._items, []
            self._out += encode(self._make(items))
        if not self._waiting_writable:
            self._send()

    def _send(self) -> None:
        try:
            while self._out:
                sent = self._sock.send(self._out)
                del self._out[:sent]
        except BlockingIOError:
            if not self._waiting_writable:
                self._waiting_writable = True
                self._loop.add_writer(self._sock.fileno(), self._writable)
            return
        except OSError as exc:
            self.close()
            self._on_error(exc)
            return
        if self._waiting_writable:
            self._waiting_writable = False
            self._loop.remove_writer(self._sock.fileno())

    def _writable(self) -> None:
        self._send()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._waiting_writable:
            self._waiting_writable = False
            self._loop.remove_writer(self._sock.fileno())


def to_host(items: list[object]) -> host_pb2.ToHost:
    frame = host_pb2.ToHost()
    frame.commands.extend(items)  # type: ignore[arg-type]
    return frame


def from_host(items: list[object]) -> host_pb2.FromHost:
    frame = host_pb2.FromHost()
    frame.events.extend(items)  # type: ignore[arg-type]
    return frame
