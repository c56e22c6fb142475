"""What the client knows about the cluster: node addresses and where names run.

Pure state, no IO; the client feeds it from ``cluster()`` answers, watch events, call
replies and redirect metadata.

``Peers`` (the address book):

- starts from the seeds; learns ``id → address`` from ``cluster()``, locations and
  redirects; remembers the leader;
- ``pick()`` prefers the leader, then the node that answered last, then the rest in
  rotation; an address that failed to connect goes to the back until it answers again.
  ``pick_any()`` spreads long-lived watch streams over the reachable nodes.

``PlacementCache`` (name → where it runs), fed by one watch stream:

- ``Reset`` drops the entries and marks the cache unsynced; the listing refills it;
  ``Synced`` makes it authoritative for ``whereis``; a broken stream marks it unsynced
  again (routing still uses it as a hint; ``whereis`` asks a node instead).
- This client's own writes set a *floor* for the name: events older than the write are
  ignored and lookups go to a node until an event at or past the write arrives
  (read-your-writes).
- *Hints* — the node a call reply or a ``registry-owner`` redirect named — take
  precedence over the watched entry for routing until the next event for that name.
- *Direct addresses* — the worker host port that runs a name (``call_address`` of a
  location or a call reply) — let calls skip the node; they are forgotten on the next
  event for the name (a new activation may run elsewhere) and whenever one fails.
"""

from __future__ import annotations

from random import Random

from registry.client.types import (
    Location,
    Placed,
    Removed,
    Reset,
    Synced,
    Waiting,
    WatchEvent,
)

MAX_HINTS = 100_000
"""Hints kept at most; past it they are dropped wholesale (they are only hints)."""


class Peers:
    """The address book; see the module docstring."""

    def __init__(self, seeds: list[str]) -> None:
        if not seeds:
            raise ValueError("at least one seed address (host:port) is needed")
        self.seeds = list(dict.fromkeys(seeds))
        self.nodes: dict[str, str] = {}
        """Node id → address, as last learned."""
        self.leader = ""
        """The leader's address, or ``""`` when unknown."""
        self._order: list[str] = list(self.seeds)
        self._failed: set[str] = set()
        self._last_ok = ""

    def addresses(self) -> list[str]:
        """Every address known, good ones first."""
        good = [a for a in self._order if a not in self._failed]
        return good + [a for a in self._order if a in self._failed]

    def node_at(self, address: str) -> str:
        """The node id at ``address``, or ``""``."""
        for node, addr in self.nodes.items():
            if addr == address:
                return node
        return ""

    def learn(self, node: str, address: str) -> None:
        """``node`` is reachable at ``address``."""
        if not node or not address:
            return
        self.nodes[node] = address
        if address not in self._order:
            self._order.append(address)

    def learn_members(self, members: dict[str, str], leader_address: str) -> None:
        """A ``cluster()`` answer: every member's address and the leader's."""
        for node, address in members.items():
            self.learn(node, address)
        self.leader = leader_address

    def ok(self, address: str) -> None:
        """A request to ``address`` got an answer from a node."""
        self._failed.discard(address)
        self._last_ok = address

    def failed(self, address: str) -> None:
        """``address`` could not be reached (or refused to serve)."""
        self._failed.add(address)
        if self.leader == address:
            self.leader = ""
        if address in self._order:  # rotate: try the others first
            self._order.remove(address)
            self._order.append(address)

    def pick_any(self, rng: Random, *, avoid: str = "") -> str:
        """A random reachable address (for long streams, so they spread over nodes)."""
        good = [a for a in self.addresses() if a not in self._failed and a != avoid]
        return rng.choice(good) if good else self.pick(avoid=avoid)

    def pick(self, *, avoid: str = "") -> str:
        """The address to send a request to that any node can serve (the leader, which
        has applied every acknowledged write, if known)."""
        for candidate in (self.leader, self._last_ok):
            if candidate and candidate != avoid and candidate not in self._failed:
                return candidate
        addresses = self.addresses()
        for address in addresses:
            if address != avoid:
                return address
        return addresses[0]


class PlacementCache:
    """Name → location, fed by a watch stream; see the module docstring."""

    def __init__(self) -> None:
        self.synced = False
        """The listing is complete and the stream is live: lookups may trust it."""
        self.index = 0
        """The log index of the last event applied."""
        self._entries: dict[str, Location | None] = {}  # None: waiting
        self._floors: dict[str, int] = {}
        self._hints: dict[str, tuple[str, str]] = {}
        self._direct: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def apply(self, event: WatchEvent) -> None:
        """Apply one watch event."""
        if isinstance(event, Reset):
            self._entries.clear()
            self._direct.clear()
            self.synced = False
        elif isinstance(event, Synced):
            self.synced = True
        elif isinstance(event, Placed | Waiting | Removed):
            name = event.location.name if isinstance(event, Placed) else event.name
            floor = self._floors.get(name)
            if floor is not None:
                if event.index < floor:
                    return  # older than this client's own write
                del self._floors[name]
            self._hints.pop(name, None)
            self._direct.pop(name, None)
            if isinstance(event, Placed):
                self._entries[name] = event.location
                if event.location.call_address:
                    self._direct[name] = event.location.call_address
            elif isinstance(event, Waiting):
                self._entries[name] = None
            else:
                self._entries.pop(name, None)
        self.index = max(self.index, event.index)

    def disconnected(self) -> None:
        """The stream broke: keep the entries as routing hints, stop trusting them."""
        self.synced = False

    def lookup(self, name: str) -> tuple[bool, Location | None]:
        """``(True, location)`` when the cache can answer ``whereis`` (``None``: the
        name waits for a member); ``(False, None)`` when a node must be asked."""
        if not self.synced or name in self._floors or name not in self._entries:
            return False, None
        return True, self._entries[name]

    def route(self, name: str) -> tuple[str, str] | None:
        """``(node, address)`` to send a call for ``name`` to, if known."""
        hint = self._hints.get(name)
        if hint is not None:
            return hint if hint[1] else None
        location = self._entries.get(name)
        if location is None or not location.address:
            return None
        return location.node, location.address

    def direct(self, name: str) -> str:
        """The worker host port to call ``name`` at directly, or ``""``."""
        return self._direct.get(name, "")

    def learn_direct(self, name: str, address: str) -> None:
        """A call reply says ``name``'s host serves calls at ``address``."""
        if len(self._direct) >= MAX_HINTS:
            self._direct.clear()
        self._direct[name] = address

    def drop_direct(self, name: str, address: str) -> None:
        """A call at ``address`` failed: go through the node until told again."""
        if self._direct.get(name) == address:
            del self._direct[name]

    def hint(self, name: str, node: str, address: str) -> None:
        """A reply or redirect says ``name`` runs on ``node`` at ``address``."""
        if len(self._hints) >= MAX_HINTS:
            self._hints.clear()
        self._hints[name] = (node, address)

    def miss(self, name: str, address: str) -> None:
        """A call for ``name`` at ``address`` found it not there: forget that route."""
        if self._hints.get(name, ("", ""))[1] == address:
            del self._hints[name]
        location = self._entries.get(name)
        if location is not None and location.address == address:
            self._hints[name] = ("", "")  # mask the entry until the next event

    def wrote(self, name: str, index: int) -> None:
        """This client changed ``name`` at log ``index``: ignore older events for it and
        answer lookups from a node until an event at or past ``index`` arrives."""
        if self.synced and self.index >= index:
            return  # the stream already delivered the write's effect (it can beat the reply)
        self._floors[name] = max(index, self._floors.get(name, 0))
        self._entries.pop(name, None)
        self._hints.pop(name, None)
        self._direct.pop(name, None)
