"""The client agent: makes gRPC and HTTP requests from inside the client namespace.

The test process lives in the root namespace, where the nodes' addresses do not exist.
It starts this module there with ``ip netns exec <client-ns> python -m
registry.testing.agent '<json config>'`` and talks to it in JSON lines:

- request (stdin): ``{"id": 7, "op": "cluster", "node": "n1", "timeout": 2.0, ...}``
- answer (stdout): ``{"id": 7, "ok": true, "result": ...}`` or
  ``{"id": 7, "ok": false, "code": "UNAVAILABLE", "message": "no quorum: ..."}``

Requests are served concurrently (a thread pool), so a slow call to a cut-off node does
not hold up the others. ``AgentClient`` is the test side: ``request()`` blocks until the
answer arrives or its own deadline passes. Ops: ``cluster``, ``register_many``, ``list``,
``whereis``, ``http``, ``unregister``, ``call`` (payload as text); ``connect`` (a node
added after start: its gRPC and HTTP addresses); ``member_add``, ``member_promote``,
``member_remove`` (the Admin service; the member's id in ``member``). A failed request
answers its gRPC status name and the ``registry-reason`` trailer, if any.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 300),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.max_send_message_length", 64 << 20),
]


class AgentError(Exception):
    """A request failed: ``code`` is the gRPC status name (or ``AGENT`` / ``HTTP``)."""

    def __init__(self, code: str, message: str, reason: str = "") -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reason = reason
        """The ``registry-reason`` trailer of a refused gRPC request (may be empty)."""


# -- the agent (runs inside the client namespace) ----------------------------------------


class _Server:
    def __init__(self, grpc_addr: dict[str, str], http_addr: dict[str, str]) -> None:
        import grpc

        from registry.v1 import registry_pb2_grpc

        self._grpc = grpc
        self.http_addr = http_addr
        self.channels = {
            n: grpc.insecure_channel(a, options=CHANNEL_OPTIONS) for n, a in grpc_addr.items()
        }
        self.stubs = {n: registry_pb2_grpc.RegistryStub(c) for n, c in self.channels.items()}
        self.ops: dict[str, Callable[[dict[str, Any]], Any]] = {
            "cluster": self.cluster,
            "register_many": self.register_many,
            "list": self.listing,
            "whereis": self.whereis,
            "http": self.http,
            "unregister": self.unregister,
            "call": self.call,
            "connect": self.connect,
            "member_add": self.member_add,
            "member_promote": self.member_promote,
            "member_remove": self.member_remove,
        }

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        try:
            op = self.ops[req["op"]]
            return {"id": req["id"], "ok": True, "result": op(req)}
        except self._grpc.RpcError as exc:
            code = exc.code()
            message = exc.details()
            trailers: dict[str, Any] = dict(exc.trailing_metadata() or ())  # type: ignore[arg-type]
            return {
                "id": req["id"],
                "ok": False,
                "code": code.name,
                "message": message or "",
                "reason": str(trailers.get("registry-reason", "")),
            }
        except Exception as exc:
            return {"id": req["id"], "ok": False, "code": "AGENT", "message": repr(exc)}

    def cluster(self, req: dict[str, Any]) -> dict[str, Any]:
        from registry.v1 import registry_pb2 as pb

        s = self.stubs[req["node"]].Cluster(pb.ClusterRequest(), timeout=req["timeout"])
        return {
            "node": s.node,
            "leader": s.leader,
            "term": s.term,
            "quorum": s.quorum,
            "commit_index": s.commit_index,
            "applied_index": s.applied_index,
            "names": s.names,
            "up": sorted(m.id for m in s.members if m.up),
            "members": {
                m.id: {"roles": list(m.roles), "incarnation": m.incarnation, "up": m.up}
                for m in s.members
            },
        }

    def register_many(self, req: dict[str, Any]) -> int:
        from registry.v1 import registry_pb2 as pb

        specs = [
            pb.NameSpec(
                name=s["name"],
                kind=s["kind"],
                args=s.get("args", "").encode(),
                priority=[pb.Tier(nodes=t) for t in s.get("priority") or []],
            )
            for s in req["specs"]
        ]
        reply = self.stubs[req["node"]].RegisterMany(
            pb.RegisterManyRequest(specs=specs), timeout=req["timeout"]
        )
        return int(reply.index)

    def unregister(self, req: dict[str, Any]) -> int:
        from registry.v1 import registry_pb2 as pb

        reply = self.stubs[req["node"]].Unregister(
            pb.UnregisterRequest(name=req["name"]), timeout=req["timeout"]
        )
        return int(reply.index)

    def call(self, req: dict[str, Any]) -> str:
        from registry.v1 import registry_pb2 as pb

        reply = self.stubs[req["node"]].Call(
            pb.CallRequest(name=req["name"], payload=req["payload"].encode()),
            timeout=req["timeout"],
        )
        return str(reply.payload.decode())

    def listing(self, req: dict[str, Any]) -> list[list[Any]]:
        from registry.v1 import registry_pb2 as pb

        reply = self.stubs[req["node"]].List(
            pb.ListRequest(prefix=req.get("prefix", ""), limit=req.get("limit", 100_000)),
            timeout=req["timeout"],
        )
        return [[loc.name, loc.node, loc.token, loc.stale] for loc in reply.locations]

    def whereis(self, req: dict[str, Any]) -> list[Any] | None:
        from registry.v1 import registry_pb2 as pb

        reply = self.stubs[req["node"]].WhereIs(
            pb.WhereIsRequest(name=req["name"], consistent=req.get("consistent", False)),
            timeout=req["timeout"],
        )
        if not reply.HasField("location"):
            return None
        loc = reply.location
        return [loc.name, loc.node, loc.token, loc.stale]

    def connect(self, req: dict[str, Any]) -> None:
        from registry.v1 import registry_pb2_grpc

        channel = self._grpc.insecure_channel(req["grpc"], options=CHANNEL_OPTIONS)
        self.channels[req["node"]] = channel
        self.stubs[req["node"]] = registry_pb2_grpc.RegistryStub(channel)
        self.http_addr[req["node"]] = req["http"]

    def _admin(self, node: str) -> Any:
        from registry.v1 import admin_pb2_grpc

        return admin_pb2_grpc.AdminStub(self.channels[node])

    def member_add(self, req: dict[str, Any]) -> int:
        from registry.v1 import admin_pb2 as apb

        request = apb.MemberAddRequest(
            id=req["member"], address=req["address"], peer_address=req["peer_address"]
        )
        return int(self._admin(req["node"]).MemberAdd(request, timeout=req["timeout"]).index)

    def member_promote(self, req: dict[str, Any]) -> int:
        from registry.v1 import admin_pb2 as apb

        request = apb.MemberPromoteRequest(id=req["member"])
        return int(self._admin(req["node"]).MemberPromote(request, timeout=req["timeout"]).index)

    def member_remove(self, req: dict[str, Any]) -> dict[str, Any]:
        from registry.v1 import admin_pb2 as apb

        request = apb.MemberRemoveRequest(id=req["member"], force=req.get("force", False))
        reply = self._admin(req["node"]).MemberRemove(request, timeout=req["timeout"])
        return {"index": reply.index, "moved": reply.names_moved, "handed_off": reply.handed_off}

    def http(self, req: dict[str, Any]) -> dict[str, Any]:
        url = f"http://{self.http_addr[req['node']]}{req['path']}"
        try:
            with urllib.request.urlopen(url, timeout=req["timeout"]) as resp:
                return {"status": resp.status, "body": resp.read().decode()}
        except urllib.error.HTTPError as exc:
            return {"status": exc.code, "body": exc.read().decode()}


def serve(config: dict[str, Any]) -> None:
    """Answer requests from stdin until it closes."""
    server = _Server(config["grpc"], config["http"])
    lock = threading.Lock()

    def answer(req: dict[str, Any]) -> None:
        line = json.dumps(server.handle(req))
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    with ThreadPoolExecutor(max_workers=32) as pool:
        print(json.dumps({"id": 0, "ok": True, "result": "ready"}), flush=True)
        for line in sys.stdin:
            if line.strip():
                pool.submit(answer, json.loads(line))


# -- the test side -----------------------------------------------------------------------


class AgentClient:
    """Starts the agent with ``argv_prefix`` (e.g. ``ip netns exec NS``) and talks to it."""

    def __init__(
        self,
        argv_prefix: Sequence[str],
        grpc_addr: dict[str, str],
        http_addr: dict[str, str],
        *,
        python: str = sys.executable,
        start_timeout: float = 30.0,
    ) -> None:
        config = json.dumps({"grpc": grpc_addr, "http": http_addr})
        self._proc = subprocess.Popen(
            [*argv_prefix, python, "-m", "registry.testing.agent", config],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._pending: dict[int, Future[dict[str, Any]]] = {0: Future()}
        self._reader = threading.Thread(target=self._read, name="agent-reader", daemon=True)
        self._reader.start()
        try:
            self._pending[0].result(timeout=start_timeout)
        except Exception as exc:
            self.close()
            raise AgentError("AGENT", f"the client agent did not start: {exc!r}") from exc

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                future = self._pending.pop(int(msg.get("id", -1)), None)
            if future is not None and not future.done():
                future.set_result(msg)
        with self._lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(AgentError("AGENT", "the client agent exited"))

    def request(self, op: str, node: str, *, timeout: float = 2.0, **fields: Any) -> Any:
        """Run ``op`` against ``node``; return its result or raise ``AgentError``."""
        clash = {"id", "op", "node", "timeout"} & fields.keys()
        assert not clash, f"request fields {clash} would overwrite the envelope"
        rid = next(self._ids)
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            if self._proc.poll() is not None:
                raise AgentError("AGENT", "the client agent exited")
            self._pending[rid] = future
            assert self._proc.stdin is not None
            msg = {"id": rid, "op": op, "node": node, "timeout": timeout, **fields}
            self._proc.stdin.write(json.dumps(msg) + "\n")
            self._proc.stdin.flush()
        try:
            answer = future.result(timeout=timeout + 5.0)
        except TimeoutError:
            with self._lock:
                self._pending.pop(rid, None)
            raise AgentError(
                "AGENT", f"no answer to {op} on {node} within {timeout + 5:g} s"
            ) from None
        if not answer["ok"]:
            raise AgentError(answer["code"], answer["message"], answer.get("reason", ""))
        return answer["result"]

    def close(self) -> None:
        """Stop the agent (closing stdin ends it; then SIGKILL after a bound)."""
        if self._proc.poll() is None:
            try:
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
                self._proc.wait(5.0)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        self._reader.join(5.0)


def main() -> None:
    serve(json.loads(sys.argv[1]))


if __name__ == "__main__":
    started = time.monotonic()
    main()
