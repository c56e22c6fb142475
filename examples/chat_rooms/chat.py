"""Create chat rooms, let users join and talk, and show where each room lives.

    python examples/chat_rooms/chat.py [--seed 127.0.0.1:7400] [--rooms lobby,python]

Uses the blocking ``SyncClient``. Run it again: the rooms already exist, so it just joins
and talks some more (joining is idempotent; ``say`` is not, so it is called at most once).
See README.md next to this file for starting nodes that know the ``room`` kind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence

from registry import FailedPrecondition, NameTaken, Registration, SyncClient

USERS = ("alice", "bob", "carol")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    parser = argparse.ArgumentParser(description="Chat rooms on quorum-registry (a demo).")
    parser.add_argument("--seed", action="append", help="node address (repeatable)")
    parser.add_argument("--rooms", default="lobby,python,random", help="comma-separated")
    args = parser.parse_args(argv)
    seeds = args.seed or ["127.0.0.1:7400"]
    rooms = [f"room-{r}" for r in args.rooms.split(",") if r]

    with SyncClient(seeds, timeout=10.0) as client:
        # One log entry for all rooms; on a second run they exist already.
        try:
            client.register_many(Registration(room, "room") for room in rooms)
        except NameTaken:
            pass
        except FailedPrecondition as exc:  # no node has the Room class loaded
            print(
                f"error: {exc}\nThe nodes must load registry.examples (the default; "
                "see examples/chat_rooms/README.md).",
                file=sys.stderr,
            )
            return 2
        for room in rooms:
            with contextlib.suppress(NameTaken):
                client.join("chat-rooms", room)  # a group, for multi_call below

        for i, room in enumerate(rooms):
            for user in USERS[: i + 2]:
                client.call(room, f"join:{user}".encode(), idempotent=True)
            client.call(room, f"say:alice:hello {room}".encode())  # at most once

        print(f"{'room':<14} {'node':<5} {'address':<16} {'token':>5}  members")
        for room in rooms:
            where = client.whereis(room)
            state = json.loads(client.call(room, b"members", idempotent=True))
            node = where.node if where else "-"
            address = where.address if where else "-"
            token = where.token if where else 0
            print(f"{room:<14} {node:<5} {address:<16} {token:>5}  {', '.join(state['members'])}")

        answers = client.multi_call("chat-rooms", b"members", timeout=5.0)
        people = {
            name: len(json.loads(reply)["members"])
            for name, reply in sorted(answers.items())
            if isinstance(reply, bytes)
        }
        failed = {name: str(err) for name, err in answers.items() if not isinstance(err, bytes)}
        print(f"people per room (multi_call): {people}")
        if failed:
            print(f"rooms that did not answer: {failed}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
