"""The fencing helper (G2): a store that refuses writes carrying a stale token."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from registry import FencedStore, RegistryError, StaleToken


def test_first_write_then_only_equal_or_higher_tokens_win() -> None:
    store = FencedStore(":memory:")
    assert store.read("k") is None
    assert store.token("k") is None
    store.write("k", 5, b"a")
    assert store.read("k") == (5, b"a")
    store.write("k", 5, b"b")  # the same activation writes again
    assert store.read("k") == (5, b"b")
    store.write("k", 9, b"c")  # a newer activation
    assert store.read("k") == (9, b"c")


def test_a_stale_token_is_refused_and_changes_nothing() -> None:
    store = FencedStore(":memory:")
    store.write("k", 9, b"new")
    with pytest.raises(StaleToken) as caught:
        store.write("k", 5, b"old")
    error = caught.value
    assert isinstance(error, RegistryError)
    assert (error.key, error.token, error.stored) == ("k", 5, 9)
    assert "stale fencing token 5" in str(error) and "token 9" in str(error)
    assert store.read("k") == (9, b"new")


def test_keys_are_fenced_independently() -> None:
    store = FencedStore(":memory:")
    store.write("a", 100, b"x")
    store.write("b", 1, b"y")
    assert store.read("b") == (1, b"y")


def test_negative_tokens_are_rejected() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        FencedStore(":memory:").write("k", -1, b"x")


def test_two_connections_to_one_file_agree(tmp_path: Path) -> None:
    path = tmp_path / "fenced.db"
    old, new = FencedStore(path), FencedStore(path)
    old.write("room", 3, b"from the old activation")
    new.write("room", 7, b"from the new activation")
    with pytest.raises(StaleToken):
        old.write("room", 3, b"late write after a pause")  # the zombie is fenced off
    assert old.read("room") == (7, b"from the new activation")
    old.close()
    old.close()  # safe twice
    new.close()


def test_racing_writers_leave_the_highest_token(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    FencedStore(path).close()  # create the table once
    outcomes: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def writer(token: int) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        store = FencedStore(conn)
        for _ in range(20):
            try:
                store.write("k", token, str(token).encode())
                ok = True
            except StaleToken:
                ok = False
            with lock:
                outcomes.append((token, ok))
        conn.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(1, 9)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = FencedStore(path)
    assert store.read("k") == (8, b"8")
    assert any(ok for token, ok in outcomes if token == 8)
    store.close()


def test_a_caller_owned_connection_stays_open() -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    store = FencedStore(conn)
    store.write("k", 1, b"x")
    store.close()
    assert conn.execute("SELECT count(*) FROM fenced").fetchone() == (1,)
    conn.close()
