"""How an external store rejects a stale fencing token (G2), shown with SQLite.

Why: the registry guarantees that at most one activation of a name runs at a time, but a
paused process (GC, SIGSTOP, a slow disk) can wake up *after* its lease ended and a newer
activation started elsewhere, and then write. Every activation carries a fencing token
(``ctx.token``, also ``Location.token``) strictly greater than every earlier activation's.
If the store remembers the highest token that wrote each key and refuses lower ones, the
late write of the old activation is rejected instead of clobbering the new one's data
(Kleppmann, "How to do distributed locking", 2016).

The rule fits in one atomic statement — an upsert whose update only happens when the
token is at least the stored one::

    INSERT INTO fenced (key, token, value) VALUES (?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET token = excluded.token, value = excluded.value
    WHERE excluded.token >= fenced.token

No read-then-write race is possible: SQLite runs the statement as one transaction, and
"0 rows changed" means the token was stale. Any store with a conditional write works the
same way (PostgreSQL ``UPDATE … WHERE token <= $1``, etcd/DynamoDB compare-and-set).

In a worker::

    class Account(Worker):
        kind = "account"

        async def on_start(self, ctx: Context, state: bytes | None) -> None:
            self.ctx = ctx
            self.store = FencedStore("accounts.db")

        async def handle_call(self, payload: bytes) -> bytes:
            self.store.write(self.ctx.name, self.ctx.token, payload)  # may raise StaleToken
            return b"ok"

(A real worker would run the blocking SQLite call in a thread, ``asyncio.to_thread``.)
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from registry.core.errors import RegistryError

__all__ = ["FencedStore", "StaleToken"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fenced (
    key   TEXT    PRIMARY KEY,
    token INTEGER NOT NULL CHECK (token >= 0),
    value BLOB    NOT NULL
)
"""
_WRITE = """
INSERT INTO fenced (key, token, value) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET token = excluded.token, value = excluded.value
WHERE excluded.token >= fenced.token
"""


class StaleToken(RegistryError):
    """A write carried a fencing token lower than one that already wrote the key: it
    comes from an activation that has been superseded, and was refused."""

    def __init__(self, key: str, token: int, stored: int) -> None:
        self.key = key
        """The key written."""
        self.token = token
        """The token the refused write carried."""
        self.stored = stored
        """The (higher) token stored for the key when it was refused."""
        super().__init__(
            f"stale fencing token {token} for {key!r}: a newer activation (token {stored}) "
            "has written it; this activation must stop"
        )


class FencedStore:
    """A key → value table in SQLite whose writes are fenced by token.

    ``FencedStore(":memory:")`` or a file path; or pass an open ``sqlite3.Connection``
    (it must be in autocommit mode, ``isolation_level=None``, so that each write commits
    on its own). One store object belongs to one thread, as ``sqlite3`` connections do.
    """

    def __init__(self, database: str | Path | sqlite3.Connection) -> None:
        if isinstance(database, sqlite3.Connection):
            self._db = database
            self._owned = False
        else:
            self._db = sqlite3.connect(database, isolation_level=None)
            self._owned = True
        self._db.execute(_SCHEMA)

    def write(self, key: str, token: int, value: bytes) -> None:
        """Store ``value`` under ``key`` if ``token`` ≥ the token stored for it (or the
        key is new), atomically. Raises ``StaleToken`` otherwise, changing nothing."""
        if token < 0:
            raise ValueError(f"a fencing token is >= 0 (got {token})")
        changed = self._db.execute(_WRITE, (key, token, value)).rowcount
        if changed == 0:
            stored = self.token(key)
            raise StaleToken(key, token, stored if stored is not None else token)

    def read(self, key: str) -> tuple[int, bytes] | None:
        """``(token, value)`` last written under ``key``, or ``None``."""
        row = self._db.execute("SELECT token, value FROM fenced WHERE key = ?", (key,)).fetchone()
        return None if row is None else (int(row[0]), bytes(row[1]))

    def token(self, key: str) -> int | None:
        """The highest token that wrote ``key``, or ``None``."""
        row = self._db.execute("SELECT token FROM fenced WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def close(self) -> None:
        """Close the connection if this store opened it; safe to call twice."""
        if self._owned:
            self._db.close()
            self._owned = False
