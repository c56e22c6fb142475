"""The peer protocol version: what a node speaks on the peer port, and what it accepts.

Rules:

- Every peer stream carries, both ways, in its gRPC metadata beside the cluster id
  (``registry-cluster-id``): ``registry-peer-protocol`` (the version this node speaks) and
  ``registry-peer-protocol-range`` (``min-max``, the versions it accepts).
- A version is bumped whenever a peer message changes meaning or gains a field a peer
  must understand (as ``applied`` was added to member heartbeats). A release keeps
  accepting the previous version, so during a rolling upgrade (one release at a time)
  old and new nodes never refuse each other.
- A stream without the key comes from a release before versioning: version 0, whose wire
  format is the one version 1 introduced the key for (nothing else changed).
- A peer outside the accepted range is refused with ``FAILED_PRECONDITION`` and one
  rate-limited log line naming both versions (metric reason ``protocol_version``); the
  refused side logs it too and keeps retrying slowly, so the cluster heals by itself
  once the node is upgraded.
- ``REGISTRY_TEST_PEER_PROTOCOL`` (tests only) makes a node advertise another version.
- ``registry-entry-codecs`` (``json,binary1``) says which log entry encodings the node
  reads. It is not a protocol version (entries are not peer messages; an older node
  ignores the key and reads JSON only): a node writes binary entries only once every
  peer it knows has said it reads them (``registry.core.commands``).
- ``registry-peer-features`` (``batch1``) says the node reads ``PeerBatch`` envelopes
  (several messages in one stream write). Also not a version: a sender batches only on
  a stream whose server said so in its initial metadata, so an older node (which
  ignores the key and says nothing) only ever gets single messages.
- A field whose absence is safe needs neither: ``TIMEOUT_NOW``'s ``handover``
  (``registry.core.membership`` rule 5) is ignored by an older receiver (proto3 skips
  unknown fields) and missing from an older sender's, and a receiver without it counts
  ``down_after`` from its own win, as before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

PROTOCOL_KEY = "registry-peer-protocol"
RANGE_KEY = "registry-peer-protocol-range"
PROTOCOL_VERSION = 1
"""The version this release speaks."""
MIN_SUPPORTED = 0
"""The oldest version this release accepts (0: before versioning; same wire format)."""
MAX_SUPPORTED = 1
TEST_ENV = "REGISTRY_TEST_PEER_PROTOCOL"
MISMATCH = "peer protocol mismatch"


ENTRY_CODECS_KEY = "registry-entry-codecs"
ENTRY_CODECS = "json,binary1"


PEER_FEATURES_KEY = "registry-peer-features"
PEER_FEATURES = "batch1"


def reads_batches(items: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether the peer said it reads ``PeerBatch`` envelopes (``PEER_FEATURES_KEY``)."""
    for key, value in items or ():
        if key == PEER_FEATURES_KEY:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return "batch1" in text.split(",")
    return False


def reads_binary_entries(items: Iterable[tuple[str, str | bytes]] | None) -> bool:
    """Whether the peer said it reads binary log entries (``ENTRY_CODECS_KEY``)."""
    for key, value in items or ():
        if key == ENTRY_CODECS_KEY:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return "binary1" in text.split(",")
    return False


def advertised() -> int:
    """The version this node puts in its metadata (the test knob may override it)."""
    forced = os.environ.get(TEST_ENV, "")
    return int(forced) if forced.isdigit() else PROTOCOL_VERSION


def metadata() -> tuple[tuple[str, str], ...]:
    return (
        (PROTOCOL_KEY, str(advertised())),
        (RANGE_KEY, f"{MIN_SUPPORTED}-{MAX_SUPPORTED}"),
        (ENTRY_CODECS_KEY, ENTRY_CODECS),
        (PEER_FEATURES_KEY, PEER_FEATURES),
    )


def version_of(items: Iterable[tuple[str, str | bytes]] | None) -> int | None:
    """The peer's version (0 when absent); ``None`` when the value is not a number."""
    for key, value in items or ():
        if key == PROTOCOL_KEY:
            text = value if isinstance(value, str) else value.decode("utf-8", "replace")
            return int(text) if text.isdigit() and len(text) < 10 else None
    return 0


def problem(peer: str, theirs: int | None, node: str) -> str | None:
    """Why ``peer`` (speaking ``theirs``) must be refused by ``node``, or ``None``."""
    if theirs is not None and MIN_SUPPORTED <= theirs <= MAX_SUPPORTED:
        return None
    spoken = "an unreadable version" if theirs is None else f"version {theirs}"
    return (
        f"{MISMATCH}: {peer} speaks {spoken}; {node} (version {advertised()}) accepts "
        f"{MIN_SUPPORTED}-{MAX_SUPPORTED}: upgrade the older node (one release at a time)"
    )
