"""``registry member add|promote|remove|list``: change the voter set of a running cluster.

They talk to one node (``--addr``, else ``$REGISTRY_ADDR``, else 127.0.0.1:7400), which
forwards to the leader, with the client TLS and token flags of every command (``--ca``,
``--cert``, ``--key``, ``--token``; the token needs the ``admin`` permission when the
cluster has client auth). Errors print ``error: CODE: message`` and exit 1. The runbook for
replacing a dead voter is in docs/operations.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from registry.cli.connection import (
    DEFAULT_ADDR,
    BadConnectionArgs,
    add_connection_args,
    admin_channel,
    connection_from_args,
)

PROMOTE_RETRY_S = 0.2
"""Pause between promotion attempts while the learner catches up."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    member = commands.add_parser(
        "member",
        help="add, promote, remove or list cluster members (admin)",
        description="Runtime membership changes: a new node joins as a learner and "
        "becomes a voter once promoted (after it has caught up); a removed node's id is "
        "retired for good.",
    )
    actions = member.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help_text: str, handler: Callable[[Any, argparse.Namespace], int]) -> Any:
        parser = actions.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--addr", help=f"node address (default $REGISTRY_ADDR or {DEFAULT_ADDR})"
        )
        parser.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
        add_connection_args(parser)
        parser.set_defaults(handler=lambda args: _run(handler, args))
        return parser

    lst = add("list", "list voters, learners, members and retired ids", _list)
    lst.add_argument("--json", action="store_true", help="print JSON")
    new = add("add", "add a node as a learner (start it with --learner first or after)", _add)
    new.add_argument("id", help="the new node's id (never a removed one)")
    new.add_argument("--address", required=True, help="its client gRPC host:port")
    new.add_argument("--peer-address", default="", help="its peer host:port (default +1000)")
    new.add_argument(
        "--promote", action="store_true", help="then promote it once caught up (see promote)"
    )
    promote = add("promote", "make a caught-up learner a voter", _promote)
    promote.add_argument("id")
    remove = add("remove", "remove a voter or learner; its names move elsewhere", _remove)
    remove.add_argument("id")
    remove.add_argument(
        "--force",
        action="store_true",
        help="even if the voters left would not have a reachable majority",
    )


def _run(handler: Callable[[Any, argparse.Namespace], int], args: argparse.Namespace) -> int:
    import grpc

    from registry.v1 import admin_pb2_grpc

    try:
        conn = connection_from_args(args)
    except BadConnectionArgs as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    channel, raw = admin_channel(conn)
    with raw:
        try:
            return handler(admin_pb2_grpc.AdminStub(channel), args)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1


def _list(stub: Any, args: argparse.Namespace) -> int:
    from google.protobuf.json_format import MessageToDict

    from registry.v1 import admin_pb2 as apb

    reply = stub.MemberList(apb.MemberListRequest(), timeout=args.timeout)
    if args.json:
        print(json.dumps(MessageToDict(reply, always_print_fields_with_no_presence=True)))
        return 0
    print(f"leader {reply.leader or '-'}, commit index {reply.commit_index}")
    for m in reply.members:
        up = "up" if m.up else "down"
        print(
            f"  {m.id:<10} {m.role:<8} {up:<5} {m.address:<22} peer {m.peer_address:<22} "
            f"match {m.match:<8} names {m.activations}"
        )
    return 0


def _add(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import admin_pb2 as apb

    request = apb.MemberAddRequest(id=args.id, address=args.address, peer_address=args.peer_address)
    reply = stub.MemberAdd(request, timeout=args.timeout)
    print(f"{args.id} added as a learner (log index {reply.index})")
    return _promote(stub, args) if args.promote else 0


def _promote(stub: Any, args: argparse.Namespace) -> int:
    """Retry while the learner is still catching up (reason NOT_CAUGHT_UP), up to
    ``--timeout`` seconds."""
    import grpc

    from registry.node.admin import NOT_CAUGHT_UP
    from registry.node.status import REASON_KEY
    from registry.v1 import admin_pb2 as apb

    started = time.monotonic()
    deadline = started + args.timeout
    while True:
        try:
            reply = stub.MemberPromote(
                apb.MemberPromoteRequest(id=args.id), timeout=max(1.0, deadline - time.monotonic())
            )
            break
        except grpc.RpcError as exc:
            trailers: Any = exc.trailing_metadata()
            reasons = {key: value for key, value in trailers or ()}
            if reasons.get(REASON_KEY) != NOT_CAUGHT_UP or time.monotonic() >= deadline:
                raise
            time.sleep(PROMOTE_RETRY_S)  # bounded by the deadline above
    elapsed = time.monotonic() - started
    print(f"{args.id} promoted to voter (log index {reply.index}) after {elapsed:.2f} s")
    return 0


def _remove(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import admin_pb2 as apb

    reply = stub.MemberRemove(
        apb.MemberRemoveRequest(id=args.id, force=args.force), timeout=args.timeout
    )
    how = "by handoff" if reply.handed_off else "by failover"
    moved = f"; {reply.names_moved} name(s) moved {how}" if reply.names_moved else ""
    print(f"{args.id} removed (log index {reply.index}){moved}; its id is retired")
    return 0
