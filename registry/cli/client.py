"""Client commands: ``status``, ``ls``, ``whereis``, ``register``, ``unregister``, ``call``.

They use the SDK (``registry.SyncClient``: retries, redirects, several seeds): ``--addr``
takes one address or several, comma-separated (else ``$REGISTRY_ADDR``, else
127.0.0.1:7400). Each takes ``--json``. Errors print one line, ``error: REASON: message``
(the machine-readable reason, else the status code), and exit 1.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from registry.cli.connection import DEFAULT_ADDR
from registry.cli.sdk_commands import Handler, add_command, say, text

__all__ = ["DEFAULT_ADDR", "register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def add(name: str, help_text: str, handler: Handler) -> argparse.ArgumentParser:
        return add_command(commands, name, help_text, handler)

    add("status", "show the cluster: leader, term, quorum, members", _status)
    ls = add("ls", "list registered names and where they run", _ls)
    ls.add_argument("--prefix", default="", help="only names starting with this")
    where = add("whereis", "show where a name runs", _whereis)
    where.add_argument("name")
    where.add_argument("--consistent", action="store_true", help="linearizable read")
    reg = add("register", "register a name", _register)
    reg.add_argument("name")
    reg.add_argument("--kind", required=True, help="worker kind, e.g. counter or echo")
    reg.add_argument("--args", default="", help="arguments passed to the worker (text)")
    reg.add_argument("--roles", default="", help="comma-separated roles the host must have")
    reg.add_argument(
        "--priority", default="", help="priority list: 'n1;n2,n3' = n1 first, then n2 or n3"
    )
    reg.add_argument(
        "--restart",
        choices=("permanent", "transient", "temporary"),
        help="restart policy (default permanent): transient restarts only after a crash, "
        "temporary never (the name is unregistered when its worker stops)",
    )
    reg.add_argument("--max-restarts", type=int, help="crashes tolerated per window (default 5)")
    reg.add_argument("--restart-window", type=float, help="seconds crashes count over (10)")
    reg.add_argument(
        "--lazy", action="store_true", help="start the worker only at its first message"
    )
    reg.add_argument(
        "--idle-after",
        type=float,
        default=0.0,
        help="passivate after this many idle seconds (state checkpointed; 0: never)",
    )
    unreg = add("unregister", "unregister a name (its worker is stopped)", _unregister)
    unreg.add_argument("name")
    call = add("call", "send a request to a name and print the reply", _call)
    call.add_argument("name")
    call.add_argument("payload")


def _status(client: Any, args: argparse.Namespace) -> int:
    s = client.cluster(timeout=args.timeout)
    members = [
        {
            "id": m.id,
            "address": m.address,
            "roles": list(m.roles),
            "up": m.up,
            "voter": m.voter,
            "incarnation": m.incarnation,
            "activations": m.activations,
        }
        for m in s.members
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "node": s.node,
                    "leader": s.leader,
                    "term": s.term,
                    "quorum": s.quorum,
                    "commit_index": s.commit_index,
                    "names": s.names,
                    "members": members,
                }
            )
        )
        return 0
    quorum = "yes" if s.quorum else "NO (lookups may be stale, writes refused)"
    print(f"asked {s.node}: leader {s.leader or '(none)'}, term {s.term}, quorum {quorum}")
    print(f"names {s.names}, commit index {s.commit_index}")
    print(f"{'member':<8} {'address':<22} {'up':<5} {'voter':<6} {'names':>5}  roles")
    for m in members:
        print(
            f"{m['id']:<8} {m['address']:<22} {str(m['up']).lower():<5} "
            f"{str(m['voter']).lower():<6} {m['activations']:>5}  {','.join(m['roles'])}"
        )
    return 0


def _loc(loc: Any) -> dict[str, object]:
    return {
        "name": loc.name,
        "node": loc.node,
        "address": loc.address,
        "token": loc.token,
        "kind": loc.kind,
        "stale": loc.stale,
        "active": loc.active,
    }


def _ls(client: Any, args: argparse.Namespace) -> int:
    locations, truncated = client.list_names(args.prefix, timeout=args.timeout)
    rows = [_loc(loc) for loc in locations]
    if args.json:
        print(json.dumps({"names": rows, "truncated": truncated}))
        return 0
    if not rows:
        print("no names registered" + (f" with prefix {args.prefix!r}" if args.prefix else ""))
    for r in rows:
        where = f"{r['node']} ({r['address']})" if r["node"] else "waiting for a member"
        print(f"{r['name']:<24} {r['kind']:<10} {where}  token {r['token']}")
    if truncated:
        print("(more names not shown)")
    return 0


def _whereis(client: Any, args: argparse.Namespace) -> int:
    location = client.whereis(args.name, consistent=args.consistent, timeout=args.timeout)
    if location is None:  # the SDK does not tell "not registered" from "waiting"
        value = {"name": args.name, "node": "", "address": "", "token": 0, "found": False}
        say(args, value, f"{args.name} is not registered, or waits for an eligible member")
        return 1
    out = _loc(location)
    stale = " (stale: the node asked has no quorum)" if out["stale"] else ""
    line = f"{out['name']} runs on {out['node']} ({out['address']}), token {out['token']}{stale}"
    return say(args, {**out, "found": True}, line)


def _register(client: Any, args: argparse.Namespace) -> int:
    priority = [[n for n in tier.split(",") if n] for tier in args.priority.split(";") if tier]
    index = client.register(
        args.name,
        args.kind,
        args=args.args.encode(),
        roles=[r for r in args.roles.split(",") if r],
        priority=priority or None,
        timeout=args.timeout,
        restart=args.restart,
        max_restarts=args.max_restarts,
        restart_window=args.restart_window,
        lazy=args.lazy,
        idle_after=args.idle_after,
    )
    return say(
        args, {"name": args.name, "index": index}, f"registered {args.name} (log index {index})"
    )


def _unregister(client: Any, args: argparse.Namespace) -> int:
    index = client.unregister(args.name, timeout=args.timeout)
    value = {"name": args.name, "index": index}
    return say(args, value, f"unregistered {args.name} (log index {index})")


def _call(client: Any, args: argparse.Namespace) -> int:
    reply = client.call(args.name, args.payload.encode(), args.timeout)
    return say(args, {"name": args.name, "reply": text(reply)}, text(reply))
