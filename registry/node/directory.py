"""``Directory``: where names and members are, as this node's clients and peers see it.

Rules:

1. Everything is read from the local replica's committed state (``RegistryReader``),
   fetched afresh on every lookup: a snapshot install replaces the state object, so a
   reference kept across Readies would go stale.
2. A member's address is the configured one first (``peers``), then the one its
   heartbeats carried, then the one ``MemberAdd`` admitted it with. Peer ports follow
   the same order (configured, admitted, then the client port + 1000).
3. A location is marked ``stale`` while this node holds no member lease: it may lag.
4. ``call_address`` (the worker host's own port) is filled only for names this node
   holds; other nodes' hosts are learned from their answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from registry.core.messages import NodeId
from registry.core.state import NameRecord
from registry.core.view import RegistryReader
from registry.node.config import derive_peer_address
from registry.v1 import registry_pb2 as pb


class Directory:
    def __init__(
        self,
        registry: Callable[[], RegistryReader],
        *,
        lease_holds: Callable[[], bool],
        peers: Mapping[NodeId, str] | None = None,
        configured_peer_address: Callable[[NodeId], str | None] = lambda _node: None,
        me: NodeId = "",
        call_address: Callable[[str], str] = lambda _name: "",
        active: Callable[[str], bool | None] = lambda _name: None,
    ) -> None:
        self._me = me
        self._call_address = call_address
        self._active = active
        self._registry = registry
        self._lease_holds = lease_holds
        self._peers = dict(peers or {})
        self._configured_peer_address = configured_peer_address

    @property
    def registry(self) -> RegistryReader:
        """The committed registry state now."""
        return self._registry()

    def address_of(self, node: NodeId) -> str | None:
        """A member's client address (rule 2)."""
        if node in self._peers:
            return self._peers[node]
        state = self._registry()
        member = state.members.get(node)
        if member and member.address:
            return member.address
        admitted = state.admitted.get(node)  # added by MemberAdd
        return admitted[0] if admitted else None

    def peer_address_of(self, node: NodeId) -> str | None:
        """A member's peer port (rule 2)."""
        configured = self._configured_peer_address(node)
        if configured is not None:
            return configured
        state = self._registry()
        admitted = state.admitted.get(node)  # added by MemberAdd
        if admitted:
            return admitted[1]
        member = state.members.get(node)
        return derive_peer_address(member.address) if member and member.address else None

    def location(self, record: NameRecord) -> pb.Location:
        """Where ``record``'s activation runs, as clients are told (rule 3)."""
        member = self._registry().members.get(record.holder)
        location = pb.Location(
            name=record.spec.name,
            node=record.holder,
            address=member.address if member else "",
            token=record.token,
            stale=not self._lease_holds(),
            kind=record.spec.kind,
            # A worker host's own port (direct calls): only the holder knows it.
            call_address=self._call_address(record.spec.name) if record.holder == self._me else "",
        )
        active = self._active(record.spec.name) if record.holder == self._me else None
        if active is not None:
            location.active = active  # only the holder knows
        return location
