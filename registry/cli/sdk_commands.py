"""Client commands on the SDK: ``cast``, ``join``, ``leave``, ``members``, ``publish``,
``multi-call``, ``watch``.

They use ``registry.SyncClient``, so they get its retries, redirects and seeds: ``--addr``
takes one address or several, comma-separated (else ``$REGISTRY_ADDR``, else
127.0.0.1:7400). Every command takes ``--json`` (one JSON object per line). Errors print
one line, ``error: REASON: message`` (the machine-readable reason, else the status
code), and exit 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from registry.cli.connection import (
    DEFAULT_ADDR,
    BadConnectionArgs,
    add_connection_args,
    connection_from_args,
)

Handler = Callable[[Any, argparse.Namespace], int]


def add_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Handler,
) -> argparse.ArgumentParser:
    """A client command: ``--addr``, ``--timeout``, ``--json``; ``handler(client, args)``
    runs with a ``SyncClient`` (``run_with_client``)."""
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--addr",
        help=f"node address(es), comma-separated (default $REGISTRY_ADDR or {DEFAULT_ADDR})",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    add_connection_args(parser)
    parser.set_defaults(handler=lambda args: run_with_client(handler, args))
    return parser


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        return add_command(commands, name, help_text, handler)

    cast = add("cast", "send a fire-and-forget message to a name", _cast)
    cast.add_argument("name")
    cast.add_argument("payload")
    for verb, what in (("join", "add a name to a group"), ("leave", "remove it from a group")):
        group = add(verb, what, _join if verb == "join" else _leave)
        group.add_argument("group")
        group.add_argument("name")
    members = add("members", "list the names in a group", _members)
    members.add_argument("group")
    publish = add("publish", "cast a message to every name in a group", _publish)
    publish.add_argument("group")
    publish.add_argument("payload")
    multi = add("multi-call", "call every name in a group; print each reply", _multi_call)
    multi.add_argument("group")
    multi.add_argument("payload")
    watch = add("watch", "print placement events for names with a prefix", _watch)
    watch.add_argument("prefix", nargs="?", default="")
    watch.add_argument(
        "--count", type=int, default=0, help="stop after this many events (default: never)"
    )
    watch.add_argument(
        "--until-synced", action="store_true", help="stop once the initial listing is complete"
    )


def run_with_client(handler: Handler, args: argparse.Namespace) -> int:
    """Run ``handler(client, args)`` with a ``SyncClient`` on the seeds of ``--addr``;
    a ``RegistryError`` becomes one ``error:`` line (and a JSON object with ``--json``)
    and exit code 1."""
    from registry.client import RegistryError, SyncClient

    try:
        conn = connection_from_args(args)
    except BadConnectionArgs as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with SyncClient(
            list(conn.seeds), timeout=args.timeout, tls=conn.tls, token=conn.token
        ) as client:
            return handler(client, args)
    except RegistryError as exc:
        code, reason = getattr(exc, "code", ""), getattr(exc, "reason", "")
        if args.json:
            error = reason or code or type(exc).__name__
            print(json.dumps({"error": error, "code": code, "message": str(exc)}))
        # The status code and the reason (PERMISSION_DENIED PERMISSION), each once.
        label = " ".join(dict.fromkeys(p for p in (code, reason) if p)) or type(exc).__name__
        print(f"error: {label}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def text(payload: bytes) -> str:
    """A reply as text, or as hex when it is not UTF-8."""
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return payload.hex()


def say(args: argparse.Namespace, value: dict[str, Any], text: str) -> int:
    print(json.dumps(value) if args.json else text, flush=True)
    return 0


def _cast(client: Any, args: argparse.Namespace) -> int:
    client.cast(args.name, args.payload.encode())
    return say(args, {"name": args.name, "sent": True}, f"sent to {args.name}")


def _join(client: Any, args: argparse.Namespace) -> int:
    index = client.join(args.group, args.name)
    value = {"group": args.group, "name": args.name, "index": index}
    return say(args, value, f"{args.name} joined {args.group} (log index {index})")


def _leave(client: Any, args: argparse.Namespace) -> int:
    index = client.leave(args.group, args.name)
    value = {"group": args.group, "name": args.name, "index": index}
    return say(args, value, f"{args.name} left {args.group} (log index {index})")


def _members(client: Any, args: argparse.Namespace) -> int:
    names = client.members(args.group)
    return say(args, {"group": args.group, "names": names}, "\n".join(names) or "(empty)")


def _publish(client: Any, args: argparse.Namespace) -> int:
    delivered = client.publish(args.group, args.payload.encode())
    value = {"group": args.group, "delivered": delivered}
    return say(args, value, f"delivered to {delivered} member(s) of {args.group}")


def _multi_call(client: Any, args: argparse.Namespace) -> int:
    replies = client.multi_call(args.group, args.payload.encode(), args.timeout)
    out: dict[str, dict[str, str]] = {}
    for name, reply in sorted(replies.items()):
        if isinstance(reply, bytes):
            out[name] = {"reply": text(reply)}
        else:
            out[name] = {"error": getattr(reply, "reason", "") or type(reply).__name__,
                         "message": str(reply)}  # fmt: skip
    lines = [
        f"{name}: {v['reply']}" if "reply" in v else f"{name}: error {v['error']}: {v['message']}"
        for name, v in out.items()
    ]
    say(args, {"group": args.group, "results": out}, "\n".join(lines) or "(no members)")
    return 0 if all("reply" in v for v in out.values()) else 1


def _watch(client: Any, args: argparse.Namespace) -> int:
    from registry.client import Placed, Synced

    seen = 0
    stream = client.watch(args.prefix)
    try:
        for event in stream:
            value = {"event": type(event).__name__.lower(), **asdict(event)}
            if isinstance(event, Placed):
                line = f"placed {event.location.name} on {event.location.node} (token {event.location.token})"  # noqa: E501
            else:
                line = " ".join(f"{k}={v}" for k, v in value.items())
            say(args, value, line)
            seen += 1
            if (args.count and seen >= args.count) or (
                args.until_synced and isinstance(event, Synced)
            ):
                return 0
    finally:
        stream.close()
    return 0
