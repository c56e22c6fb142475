"""The Raft harness's application: a hash chain over every applied entry.

Why a hash chain: its digest at index *i* commits to the whole log prefix up to *i*
(``sha256(prev ‖ index ‖ term ‖ data)``), so two nodes with equal digests applied the same
entries — even when one of them skipped those entries by installing a snapshot. The
state also keeps the last 32 values and a count, and the snapshot encoding is padded
to at least 1 KiB with bytes derived from the digest, so with small chunk sizes a
snapshot always spans several chunks and a misassembled one fails ``decode``.
"""

from __future__ import annotations

import hashlib
import struct
from collections import deque

from registry.core.messages import Entry, EntryType

GENESIS = hashlib.sha256(b"quorum-registry hash chain").digest()
MAGIC = b"HCv1"
MIN_SNAPSHOT_BYTES = 1024
KEEP = 32
_HEADER = struct.Struct(">4sQQ32sH")  # magic, index, count, digest, number of values


class CorruptSnapshot(ValueError):
    """Snapshot bytes that this application never produced."""


class HashChain:
    __slots__ = ("conf_changes", "count", "digest", "index", "values")

    def __init__(self) -> None:
        self.index = 0
        self.count = 0
        self.conf_changes = 0
        self.digest = GENESIS
        self.values: deque[bytes] = deque(maxlen=KEEP)

    def apply(self, entry: Entry) -> bytes:
        """Fold ``entry`` into the chain; returns the new digest."""
        h = hashlib.sha256(self.digest)
        h.update(struct.pack(">QQ", entry.index, entry.term))
        h.update(entry.data)
        self.digest = h.digest()
        self.index = entry.index
        self.count += 1
        if entry.type is EntryType.CONF_CHANGE:
            self.conf_changes += 1
        elif entry.data:
            self.values.append(entry.data)
        return self.digest

    def encode(self) -> bytes:
        parts = [_HEADER.pack(MAGIC, self.index, self.count, self.digest, len(self.values))]
        for value in self.values:
            parts.append(struct.pack(">H", len(value)) + value)
        body = b"".join(parts)
        return body + _padding(self.digest, max(0, MIN_SNAPSHOT_BYTES - len(body)))

    @staticmethod
    def decode(data: bytes) -> HashChain:
        try:
            magic, index, count, digest, n = _HEADER.unpack_from(data, 0)
        except struct.error as exc:
            raise CorruptSnapshot(f"short snapshot ({len(data)} bytes)") from exc
        if magic != MAGIC:
            raise CorruptSnapshot(f"bad magic {magic!r}")
        chain = HashChain()
        chain.index, chain.count, chain.digest = index, count, digest
        at = _HEADER.size
        for _ in range(n):
            if at + 2 > len(data):
                raise CorruptSnapshot(f"snapshot at index {index} ends inside its values")
            (size,) = struct.unpack_from(">H", data, at)
            chain.values.append(data[at + 2 : at + 2 + size])
            at += 2 + size
        if data[at:] != _padding(digest, len(data) - at) or len(data) < MIN_SNAPSHOT_BYTES:
            raise CorruptSnapshot(f"padding of snapshot at index {index} does not match")
        return chain


def _padding(digest: bytes, size: int) -> bytes:
    out = bytearray()
    block = digest
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])
