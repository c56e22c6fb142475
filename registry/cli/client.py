"""Client commands: ``status``, ``ls``, ``whereis``, ``register``, ``unregister``, ``call``.

They talk gRPC to one node (``--addr``, else ``$REGISTRY_ADDR``, else 127.0.0.1:7400);
the node forwards writes to the leader and calls to the owner. Errors print one line,
``error: CODE: message``, and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any

DEFAULT_ADDR = "127.0.0.1:7400"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def add(
        name: str,
        help_text: str,
        handler: Callable[[Any, argparse.Namespace], int],
        json_flag: bool = False,
    ) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--addr", help=f"node address (default $REGISTRY_ADDR or {DEFAULT_ADDR})"
        )
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
        parser.add_argument(
            "--ca", help="client TLS: the CA of the node's certificate (PEM; $REGISTRY_CA)"
        )
        parser.add_argument("--cert", help="client TLS: this client's certificate (PEM)")
        parser.add_argument("--key", help="client TLS: this client's private key (PEM)")
        parser.add_argument("--token", help="bearer token (default $REGISTRY_TOKEN)")
        if json_flag:
            parser.add_argument("--json", action="store_true", help="print JSON")
        parser.set_defaults(handler=lambda args: _run(handler, args))
        return parser

    add("status", "show the cluster: leader, term, quorum, members", _status, True)
    ls = add("ls", "list registered names and where they run", _ls, True)
    ls.add_argument("--prefix", default="", help="only names starting with this")
    where = add("whereis", "show where a name runs", _whereis, True)
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
    unreg = add("unregister", "unregister a name (its worker is stopped)", _unregister)
    unreg.add_argument("name")
    call = add("call", "send a request to a name and print the reply", _call)
    call.add_argument("name")
    call.add_argument("payload")


def _run(handler: Callable[[Any, argparse.Namespace], int], args: argparse.Namespace) -> int:
    import grpc

    from registry.v1 import registry_pb2_grpc

    addr = args.addr or os.environ.get("REGISTRY_ADDR") or DEFAULT_ADDR
    ca = args.ca or os.environ.get("REGISTRY_CA")
    if ca:
        from registry.client.tls import Tls

        try:
            tls = Tls(ca=ca, cert=args.cert, key=args.key)
            credentials = tls.credentials()
        except (OSError, ValueError) as exc:
            print(f"error: client TLS: {exc}", file=sys.stderr)
            return 2
        channel = grpc.secure_channel(addr, credentials)
    elif args.cert or args.key:
        print("error: --cert/--key need --ca (the node certificate's CA)", file=sys.stderr)
        return 2
    else:
        channel = grpc.insecure_channel(addr)
    token = args.token or os.environ.get("REGISTRY_TOKEN")
    if token:
        channel = grpc.intercept_channel(channel, _bearer(token))
    with channel:
        stub = registry_pb2_grpc.RegistryStub(channel)
        try:
            return handler(stub, args)
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            details = exc.details() if hasattr(exc, "details") else str(exc)
            if code == "UNAVAILABLE" and "connect" in (details or "").lower():
                details = f"cannot reach a node at {addr} ({details})"
            print(f"error: {code}: {details}", file=sys.stderr)
            return 1


def _bearer(token: str) -> Any:
    import grpc

    class Bearer(grpc.UnaryUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            metadata = [*(details.metadata or ()), ("authorization", f"Bearer {token}")]
            return continuation(details._replace(metadata=metadata), request)

    return Bearer()


def _status(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import registry_pb2 as pb

    s = stub.Cluster(pb.ClusterRequest(), timeout=args.timeout)
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
    }


def _ls(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import registry_pb2 as pb

    reply = stub.List(pb.ListRequest(prefix=args.prefix), timeout=args.timeout)
    rows = [_loc(loc) for loc in reply.locations]
    if args.json:
        print(json.dumps({"names": rows, "truncated": reply.truncated}))
        return 0
    if not rows:
        print("no names registered" + (f" with prefix {args.prefix!r}" if args.prefix else ""))
    for r in rows:
        where = f"{r['node']} ({r['address']})" if r["node"] else "waiting for a member"
        print(f"{r['name']:<24} {r['kind']:<10} {where}  token {r['token']}")
    if reply.truncated:
        print("(more names not shown)")
    return 0


def _whereis(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import registry_pb2 as pb

    reply = stub.WhereIs(
        pb.WhereIsRequest(name=args.name, consistent=args.consistent), timeout=args.timeout
    )
    if reply.waiting:
        out: dict[str, object] = {
            "name": args.name,
            "node": "",
            "address": "",
            "token": 0,
            "waiting": True,
        }
    else:
        out = _loc(reply.location)
    if args.json:
        print(json.dumps(out))
    elif reply.waiting:
        print(f"{args.name} is registered but waiting for an eligible member")
    else:
        stale = " (stale: the node asked has no quorum)" if out["stale"] else ""
        print(
            f"{out['name']} runs on {out['node']} ({out['address']}), token {out['token']}{stale}"
        )
    return 0


def _register(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import registry_pb2 as pb

    spec = pb.NameSpec(
        name=args.name,
        kind=args.kind,
        args=args.args.encode(),
        roles=[r for r in args.roles.split(",") if r],
        priority=[
            pb.Tier(nodes=[n for n in tier.split(",") if n])
            for tier in args.priority.split(";")
            if tier
        ],
    )
    reply = stub.Register(pb.RegisterRequest(spec=spec), timeout=args.timeout)
    print(f"registered {args.name} (log index {reply.index})")
    return 0


def _unregister(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import registry_pb2 as pb

    reply = stub.Unregister(pb.UnregisterRequest(name=args.name), timeout=args.timeout)
    print(f"unregistered {args.name} (log index {reply.index})")
    return 0


def _call(stub: Any, args: argparse.Namespace) -> int:
    from registry.v1 import registry_pb2 as pb

    reply = stub.Call(
        pb.CallRequest(name=args.name, payload=args.payload.encode()), timeout=args.timeout
    )
    try:
        print(reply.payload.decode())
    except UnicodeDecodeError:
        print(reply.payload.hex())
    return 0
