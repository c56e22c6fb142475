"""Bearer tokens with per-prefix roles (issue 16), on a real 3-node cluster.

Two tenants: ``alice`` may read, call and write ``alice/``; ``bob`` may read ``alice/``
and ``bob/`` but call and write only ``bob/``. Each can do exactly what its role allows
through the SDK, the CLI and raw gRPC; refused requests change nothing; Watch, List and
the HTTP status only show readable names; a missing, wrong or removed (after SIGHUP)
token is UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from registry.client import Client, SyncClient, Unauthenticated
from registry.node.auth.policy import new_token
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import RPC_TIMEOUT_S, LocalCluster, wait_for
from tests.cluster.harness import rpc_error as _rpc_error

PER_CLIENT = 4
ROLES = """
[roles.alice]
read = ["alice/"]
call = ["alice/"]
write = ["alice/"]

[roles.bob]
read = ["alice/", "bob/"]
call = ["bob/"]
write = ["bob/"]
"""


def token_file(tokens: dict[str, tuple[str, str]]) -> str:
    entries = [
        f'[tokens.{name}]\nrole = "{name}"\nsecret = "{stored}"\n'
        for name, (_, stored) in tokens.items()
    ]
    return ROLES + "\n" + "\n".join(entries)


class Tenants:
    def __init__(self, c: LocalCluster, path: Path, tokens: dict[str, tuple[str, str]]) -> None:
        self.c = c
        self.path = path
        self.tokens = tokens

    def token(self, who: str) -> str:
        return self.tokens[who][0]

    def md(self, who: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(who)}"),)

    def sdk(self, who: str, **kwargs: Any) -> SyncClient:
        seeds = [n.grpc_addr for n in self.c.nodes.values()]
        return SyncClient(seeds, token=self.token(who), **kwargs)


@pytest.fixture(scope="module")
def t(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tenants]:
    root = tmp_path_factory.mktemp("tokens")
    tokens = {"alice": new_token("alice"), "bob": new_token("bob")}
    path = root / "tokens.toml"
    path.write_text(token_file(tokens), encoding="utf-8")
    config = {"auth": "tokens", "token_file": str(path), "max_rpcs_per_client": PER_CLIENT}
    c = LocalCluster(root, 3, config=config)
    try:
        c.start(timeout=30)
        tenants = Tenants(c, path, tokens)
        with tenants.sdk("alice") as alice:
            alice.register("alice/svc", kind="echo")
        with tenants.sdk("bob") as bob:
            bob.register("bob/x", kind="echo")
        yield tenants
    finally:
        c.close()


def rpc_error(fn: Any) -> Any:
    return _rpc_error(fn)


def reason(exc: Any) -> str:
    return str(dict(exc.trailing_metadata() or ()).get("registry-reason", ""))


def test_missing_or_wrong_token_is_unauthenticated_and_cluster_stays_open(t: Tenants) -> None:
    request = pb.RegisterRequest(spec=pb.NameSpec(name="alice/evil", kind="echo"))
    forged = t.token("alice")[:-3] + "xyz"
    for node in t.c.ids:
        stub = t.c.stub(node)
        assert stub.Cluster(pb.ClusterRequest(), timeout=RPC_TIMEOUT_S).leader  # no token
        for metadata, why in (((), "MISSING_TOKEN"), (bearer(forged), "UNKNOWN_TOKEN")):
            exc = rpc_error(functools.partial(stub.Register, request, metadata=metadata, timeout=5))
            assert exc.code() is grpc.StatusCode.UNAUTHENTICATED, exc
            assert reason(exc) == why
    listed = t.c.stub(t.c.ids[0]).List(pb.ListRequest(), metadata=t.md("alice"), timeout=5)
    assert "alice/evil" not in [loc.name for loc in listed.locations]


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def test_each_token_does_exactly_what_its_role_allows_over_raw_grpc(t: Tenants) -> None:
    for node in t.c.ids:  # every node, so forwarded writes and calls are covered
        stub = t.c.stub(node)
        reply = stub.Call(
            pb.CallRequest(name="alice/svc", payload=b"hi"), metadata=t.md("alice"), timeout=10
        )
        assert reply.payload == b"hi"
        where = stub.WhereIs(pb.WhereIsRequest(name="alice/svc"), metadata=t.md("bob"), timeout=5)
        assert where.location.name == "alice/svc"  # bob may read alice/
        refusals = [
            (stub.Unregister, pb.UnregisterRequest(name="alice/svc"), "bob", "unregister", "write"),
            (stub.Call, pb.CallRequest(name="alice/svc", payload=b"x"), "bob", "call", "call"),
            (
                stub.Join,
                pb.GroupRequest(group="bob/g", name="alice/svc"),
                "bob",
                "join a group",
                "write",
            ),
            (stub.WhereIs, pb.WhereIsRequest(name="bob/x"), "alice", "look up", "read"),
        ]
        for method, request, who, verb, perm in refusals:
            exc = rpc_error(functools.partial(method, request, metadata=t.md(who), timeout=5))
            assert exc.code() is grpc.StatusCode.PERMISSION_DENIED, exc
            assert reason(exc) == "PERMISSION"
            assert f"may not {verb}" in exc.details()
            assert f"needs {perm} on" in exc.details()
    exc = rpc_error(
        functools.partial(
            t.c.stub(t.c.ids[1]).Unregister,
            pb.UnregisterRequest(name="alice/svc"),
            metadata=t.md("bob"),
            timeout=5,
        )
    )
    assert exc.details() == ("token 'bob' may not unregister 'alice/svc': needs write on 'alice/'")
    # Nothing the refusals touched changed.
    stub = t.c.stub(t.c.ids[0])
    where = stub.WhereIs(
        pb.WhereIsRequest(name="alice/svc", consistent=True), metadata=t.md("alice"), timeout=5
    )
    assert where.location.kind == "echo"
    members = rpc_error(
        functools.partial(
            stub.Members, pb.MembersRequest(group="bob/g"), metadata=t.md("bob"), timeout=5
        )
    )
    assert members.code() is grpc.StatusCode.NOT_FOUND


def test_sdk_list_watch_and_refusals(t: Tenants) -> None:
    with t.sdk("alice") as alice, t.sdk("bob") as bob:
        assert alice.call("alice/svc", b"ping") == b"ping"
        with pytest.raises(Unauthenticated, match="needs write on 'alice/'"):
            bob.unregister("alice/svc")
        with pytest.raises(Unauthenticated, match="needs call on 'alice/'"):
            bob.call("alice/svc", b"x")
        assert bob.whereis("alice/svc") is not None
        stub = t.c.stub(t.c.ids[0])
        alice_list = stub.List(pb.ListRequest(), metadata=t.md("alice"), timeout=5)
        bob_list = stub.List(pb.ListRequest(), metadata=t.md("bob"), timeout=5)
        assert [loc.name for loc in alice_list.locations] == ["alice/svc"]
        assert [loc.name for loc in bob_list.locations] == ["alice/svc", "bob/x"]
        stream = stub.Watch(pb.WatchRequest(prefix=""), metadata=t.md("alice"))
        seen: set[str] = set()
        try:
            for batch in stream:
                kinds = [e.kind for e in batch.events]
                seen |= {e.location.name for e in batch.events if e.location.name}
                if pb.WatchEvent.KIND_SYNCED in kinds:
                    break
        finally:
            stream.cancel()
        assert seen == {"alice/svc"}


def test_a_name_the_token_may_not_write_fails_only_its_own_caller_in_a_batch(
    t: Tenants,
) -> None:
    """The SDK sends concurrent registrations as one ``RegisterMany``; one name outside
    the token's write prefixes must fail alone, and change nothing."""
    seeds = [n.grpc_addr for n in t.c.nodes.values()]

    async def main() -> list[int | BaseException]:
        async with Client(seeds, token=t.token("alice")) as alice:
            return list(
                await asyncio.gather(
                    alice.register("alice/batched", "echo"),
                    alice.register("bob/smuggled", "echo"),
                    return_exceptions=True,
                )
            )

    ok, refused = asyncio.run(main())
    assert isinstance(ok, int) and ok > 0, ok
    assert isinstance(refused, Unauthenticated), refused
    assert "needs write on 'bob/'" in str(refused)
    with t.sdk("bob") as bob:
        assert bob.whereis("alice/batched") is not None
        assert bob.whereis("bob/smuggled") is None
    # The module's other tests list the tenants' names exactly: leave none behind.
    with t.sdk("alice") as alice:
        alice.unregister("alice/batched")
        wait_for("alice/batched to be gone", lambda: alice.whereis("alice/batched") is None, 10)


def test_cli_takes_token_flag_and_env(t: Tenants) -> None:
    addr = t.c.nodes[t.c.ids[0]].grpc_addr
    cli = [sys.executable, "-m", "registry.cli"]
    env = {**os.environ, "REGISTRY_TOKEN": t.token("alice")}
    ls = subprocess.run(
        [*cli, "ls", "--addr", addr, "--json"], capture_output=True, text=True, env=env
    )
    assert ls.returncode == 0, ls.stderr
    assert [loc["name"] for loc in json.loads(ls.stdout)["names"]] == ["alice/svc"]
    denied = subprocess.run(
        [*cli, "unregister", "alice/svc", "--addr", addr, "--token", t.token("bob")],
        capture_output=True,
        text=True,
    )
    assert denied.returncode == 1
    assert "PERMISSION_DENIED" in denied.stderr and "needs write on 'alice/'" in denied.stderr
    anonymous = subprocess.run([*cli, "ls", "--addr", addr], capture_output=True, text=True)
    assert anonymous.returncode == 1 and "UNAUTHENTICATED" in anonymous.stderr


def http(t: Tenants, path: str, token: str = "") -> tuple[int, bytes]:
    url = f"http://{t.c.nodes[t.c.ids[0]].http_addr}{path}"
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_http_status_names_need_a_read_token(t: Tenants) -> None:
    assert http(t, "/status/names")[0] == 401
    assert http(t, "/status")[0] == 401
    code, body = http(t, "/status/names", t.token("alice"))
    assert code == 200
    assert [n["name"] for n in json.loads(body)["names"]] == ["alice/svc"]
    for open_path in ("/metrics", "/healthz"):
        code, body = http(t, open_path)
        assert code == 200 and b"alice/" not in body


def test_one_token_cannot_take_a_node_from_the_others(t: Tenants) -> None:
    """max_rpcs_per_client counts per token once auth is on (Watch streams included)."""
    first, second = t.c.ids[0], t.c.ids[1]
    streams = [
        t.c.stub(first).Watch(pb.WatchRequest(prefix="bob/"), metadata=t.md("bob"))
        for _ in range(PER_CLIENT)
    ]
    try:
        for stream in streams:
            next(stream)  # admitted: the listing arrived
        request = pb.WhereIsRequest(name="alice/svc")
        exc = rpc_error(
            functools.partial(t.c.stub(first).WhereIs, request, metadata=t.md("bob"), timeout=5)
        )
        assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        assert reason(exc) == "TOO_MANY_RPCS" and "max_rpcs_per_client" in exc.details()
        assert t.c.stub(first).WhereIs(request, metadata=t.md("alice"), timeout=5).location.name
        assert t.c.stub(second).WhereIs(request, metadata=t.md("bob"), timeout=5).location.name
        streams.pop().cancel()

        def served() -> bool:
            reply = t.c.stub(first).WhereIs(request, metadata=t.md("bob"), timeout=5)
            return bool(reply.location.name)

        wait_for("bob served again once a stream closed", served, 10)
    finally:
        for stream in streams:
            stream.cancel()


def test_a_token_removed_by_sighup_is_refused(t: Tenants) -> None:
    remaining = {"alice": t.tokens["alice"]}
    t.path.write_text(token_file(remaining), encoding="utf-8")
    for proc in t.c.nodes.values():
        assert proc.proc is not None
        os.kill(proc.proc.pid, signal.SIGHUP)
    request = pb.WhereIsRequest(name="bob/x")
    for node in t.c.ids:
        stub = t.c.stub(node)

        def refused(stub: Any = stub) -> bool:
            try:
                stub.WhereIs(request, metadata=t.md("bob"), timeout=5)
            except grpc.RpcError as exc:
                return (
                    exc.code() is grpc.StatusCode.UNAUTHENTICATED and reason(exc) == "UNKNOWN_TOKEN"
                )
            return False

        wait_for(f"bob's token refused on {node}", refused, 10)
        reply = stub.Call(
            pb.CallRequest(name="alice/svc", payload=b"still"), metadata=t.md("alice"), timeout=10
        )
        assert reply.payload == b"still"
