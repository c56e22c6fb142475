"""The placement cache's direct addresses (worker host ports): learned from locations
and call replies, forgotten on the next event for the name, a reset, this client's own
write, or a failure at that address — never kept past a change of placement."""

from __future__ import annotations

from registry.client.routing import PlacementCache
from registry.client.types import Location, Placed, Removed, Reset, Synced, Waiting


def _placed(name: str, index: int, call_address: str = "") -> Placed:
    location = Location(
        name=name, node="n1", address="n1:7400", token=index, call_address=call_address
    )
    return Placed(location=location, index=index)


def test_a_location_s_call_address_routes_calls_until_the_next_event() -> None:
    cache = PlacementCache()
    for event in (Reset(index=1), _placed("a", 2, "h1:5000"), _placed("b", 3), Synced(index=3)):
        cache.apply(event)
    assert (cache.direct("a"), cache.direct("b")) == ("h1:5000", "")
    cache.apply(_placed("a", 4))  # a new activation, from a node that does not run it
    assert cache.direct("a") == ""
    cache.learn_direct("a", "h2:6000")  # a call reply names the host
    assert cache.direct("a") == "h2:6000"
    for change in (Waiting(name="a", index=5), Removed(name="a", index=6)):
        cache.learn_direct("a", "h2:6000")
        cache.apply(change)
        assert cache.direct("a") == "", change


def test_a_failure_a_reset_or_an_own_write_forgets_the_address() -> None:
    cache = PlacementCache()
    cache.apply(Synced(index=1))
    cache.learn_direct("a", "h1:5000")
    cache.drop_direct("a", "h9:9999")  # a failure elsewhere changes nothing
    assert cache.direct("a") == "h1:5000"
    cache.drop_direct("a", "h1:5000")
    assert cache.direct("a") == ""
    cache.learn_direct("a", "h1:5000")
    cache.apply(Reset(index=2))
    assert cache.direct("a") == ""
    cache.apply(Synced(index=2))
    cache.learn_direct("a", "h1:5000")
    cache.wrote("a", 10)  # this client moved or removed it: the stream has not said where
    assert cache.direct("a") == ""
