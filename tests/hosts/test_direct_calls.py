"""Calls straight to a worker host's own port (``registry/node/hosts/calls.py``).

- With tokens on: the host port refuses exactly what the node's port refuses (no token,
  a wrong one, a role without ``call``, an oversized payload), answers ``NOT_OWNER`` for
  a name it does not run and UNIMPLEMENTED for anything but Call/Cast; the SDK's calls
  then reach the host without the control process (its Call count does not move).
- A stale direct address — a host that was killed and restarted on a new port, or a host
  that no longer runs the name — costs the SDK nothing: it goes through the node and
  learns the new address.
- A node whose control process is paused: its host stops serving once the sub-lease runs
  out (``NO_LEASE``, as the node answers) and is gone by lease + ``fence_grace``; no call
  runs on the old activation after the successor started (ledger), and the SDK reaches
  the successor.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc

from registry.client import FailedPrecondition, SyncClient
from registry.node.auth.policy import new_token
from registry.testing.local_cluster import LocalCluster, rpc_error, wait_for
from registry.v1 import registry_pb2 as pb
from registry.v1 import registry_pb2_grpc
from tests.hosts.support import WORKER_MODULES, Ledger, ledger, local_cluster

__all__ = ["ledger"]

HOSTS = 2
MAX_PAYLOAD = 4096
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


def _reason(exc: Any) -> str:
    return str(dict(exc.trailing_metadata() or ()).get("registry-reason", ""))


def _where(c: LocalCluster, name: str, metadata: Any = ()) -> pb.Location:
    """``name``'s location as its holder answers it (only the holder knows its host's
    call address)."""
    any_node = c.stub(c.ids[0]).WhereIs(pb.WhereIsRequest(name=name), metadata=metadata, timeout=5)
    holder = any_node.location.node
    reply = c.stub(holder).WhereIs(pb.WhereIsRequest(name=name), metadata=metadata, timeout=5)
    location: pb.Location = reply.location
    return location


def _calls_served(c: LocalCluster) -> dict[str, int]:
    """Per node: Call RPCs its control process has served (``registry_rpc_seconds``)."""
    out = {}
    for node in c.running_ids():
        _, _, body = c.http_get(node, "/metrics")
        found = re.search(rb'^registry_rpc_seconds_count\{method="Call"\} (\S+)$', body, re.M)
        out[node] = int(float(found.group(1))) if found else 0
    return out


def _goes_direct(c: LocalCluster, call: Callable[[], object], within: int = 40) -> None:
    """Calls settle on the host port: ten in a row leave every node's Call count alone
    (the first few may go through the node while the SDK connects to the host)."""
    for _ in range(within // 10):
        before = _calls_served(c)
        for _ in range(10):
            call()
        if _calls_served(c) == before:
            return
    raise AssertionError(f"calls still go through the nodes after {within}: {_calls_served(c)}")


def test_host_port_applies_the_nodes_security_and_the_sdk_uses_it(tmp_path: Path) -> None:
    tokens = {"alice": new_token("alice"), "bob": new_token("bob")}
    entries = [f'[tokens.{n}]\nrole = "{n}"\nsecret = "{s}"\n' for n, (_, s) in tokens.items()]
    token_file = tmp_path / "tokens.toml"
    token_file.write_text(ROLES + "\n" + "\n".join(entries), encoding="utf-8")
    config = {
        "auth": "tokens",
        "token_file": str(token_file),
        "workers": HOSTS,
        "max_payload_bytes": MAX_PAYLOAD,
    }
    c = LocalCluster(tmp_path / "c", 3, worker_modules=WORKER_MODULES, config=config)
    seeds = [n.grpc_addr for n in c.nodes.values()]
    alice_md = (("authorization", f"Bearer {tokens['alice'][0]}"),)
    try:
        c.start(timeout=60)
        with (
            SyncClient(seeds, token=tokens["alice"][0]) as alice,
            SyncClient(seeds, token=tokens["alice"][0], cache=False) as unaware,
        ):
            alice.register("alice/a", kind="echo")
            where = _where(c, "alice/a", alice_md)
            owner, token, direct = where.node, where.token, where.call_address
            assert direct and direct != c.nodes[owner].grpc_addr, where
            with grpc.insecure_channel(direct) as channel:
                host = registry_pb2_grpc.RegistryStub(channel)
                call = functools.partial(host.Call, timeout=5)
                ok = call(pb.CallRequest(name="alice/a", payload=b"hi"), metadata=alice_md)
                assert (ok.payload, ok.node, ok.token) == (b"hi", owner, token)
                forged = tokens["alice"][0][:-3] + "xyz"
                refusals = [
                    ((), b"hi", "alice/a", grpc.StatusCode.UNAUTHENTICATED, "MISSING_TOKEN"),
                    (
                        (("authorization", f"Bearer {forged}"),),
                        b"hi",
                        "alice/a",
                        grpc.StatusCode.UNAUTHENTICATED,
                        "UNKNOWN_TOKEN",
                    ),
                    (
                        (("authorization", f"Bearer {tokens['bob'][0]}"),),
                        b"hi",
                        "alice/a",
                        grpc.StatusCode.PERMISSION_DENIED,
                        "PERMISSION",
                    ),
                    (
                        alice_md,
                        b"x" * (MAX_PAYLOAD + 1),
                        "alice/a",
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                        "PAYLOAD_TOO_LARGE",
                    ),
                    (alice_md, b"hi", "alice/nope", grpc.StatusCode.UNAVAILABLE, "NOT_OWNER"),
                ]
                for metadata, payload, name, code, why in refusals:
                    request = pb.CallRequest(name=name, payload=payload)
                    exc = rpc_error(functools.partial(call, request, metadata=metadata))
                    assert (exc.code(), _reason(exc)) == (code, why), (name, why, exc)
                    cast = functools.partial(
                        host.Cast, pb.CastRequest(name=name, payload=payload), metadata=metadata
                    )
                    assert rpc_error(cast).code() is code, (name, why)
                spec = pb.NameSpec(name="alice/b", kind="echo")
                register = functools.partial(
                    host.Register, pb.RegisterRequest(spec=spec), metadata=alice_md, timeout=5
                )
                assert rpc_error(register).code() is grpc.StatusCode.UNIMPLEMENTED

            # The SDK goes straight to the host: the control processes serve no Call.
            _goes_direct(c, lambda: alice.call("alice/a", b"sdk"))
            assert alice.call("alice/a", b"sdk") == b"sdk"

            # Killed hosts come back on new ports: the SDK's address is stale.
            proc = c.nodes[owner].proc
            assert proc is not None
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children", encoding="ascii") as f:
                hosts = [int(pid) for pid in f.read().split()]
            assert len(hosts) == HOSTS, hosts
            for pid in hosts:
                os.kill(pid, signal.SIGKILL)
            wait_for(
                "the host back on a new port",
                lambda: _where(c, "alice/a", alice_md).call_address not in ("", direct),
                20.0,
            )
            assert alice.call("alice/a", b"again", idempotent=True) == b"again"
            _goes_direct(c, lambda: alice.call("alice/a", b"sdk"))

            # A host that no longer runs the name: a client without a placement cache
            # (no watch to tell it) still has that host's address, and must get through.
            other = next(n for n in c.ids if n != owner)
            alice.register("alice/m", kind="echo", priority=[owner])
            assert unaware.call("alice/m", b"1") == b"1"
            _goes_direct(c, lambda: unaware.call("alice/m", b"1"))
            alice.unregister("alice/m")

            def moved() -> bool:
                try:  # refused while the old activation is still stopping
                    alice.register("alice/m", kind="echo", priority=[other])
                except FailedPrecondition:
                    return False
                return True

            wait_for("alice/m registered again", moved, 10.0)
            wait_for(
                "alice/m on the other node",
                lambda: _where(c, "alice/m", alice_md).node == other,
                10,
            )
            assert unaware.call("alice/m", b"moved") == b"moved"
            _goes_direct(c, lambda: unaware.call("alice/m", b"2"))
        assert not c.crashed(), c.log_tails()
    except BaseException:
        print(c.log_tails())
        raise
    finally:
        c.close()


class _Hammer:
    """Calls ``name`` at ``address`` every few ms from a thread; records (t, outcome)
    with outcome ``"ok:<token>"`` or the status's reason (``UNREACHABLE`` when no
    connection could be made)."""

    def __init__(self, address: str, name: str) -> None:
        self.results: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(address)
        self._stub = registry_pb2_grpc.RegistryStub(self._channel)
        self._name = name
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reply: Any = self._stub.Call(
                    pb.CallRequest(name=self._name, payload=b"note"), timeout=0.5
                )
                outcome = f"ok:{int(reply.payload)}"
            except grpc.RpcError as exc:
                outcome = _reason(exc) or "UNREACHABLE"
            self.results.append((time.monotonic(), outcome))
            self._stop.wait(0.005)

    def stop(self) -> list[tuple[float, str]]:
        self._stop.set()
        self._thread.join(5.0)
        self._channel.close()
        return self.results


def test_a_paused_node_s_host_refuses_then_dies_and_the_successor_answers(
    tmp_path: Path, ledger: Ledger
) -> None:
    with local_cluster(tmp_path, workers=1) as c:
        seeds = [n.grpc_addr for n in c.nodes.values()]
        name = "paused-job"
        with SyncClient(seeds) as client:
            client.register(name, kind="blocker")
            owner, token = c.owner(name)
            assert client.call(name, b"token", idempotent=True) == str(token).encode()
            direct = _where(c, name).call_address
            assert direct
            hammer = _Hammer(direct, name)
            wait_for("a direct call", lambda: any(o == f"ok:{token}" for _, o in hammer.results), 5)
            pid = c.nodes[owner].proc
            assert pid is not None
            os.kill(pid.pid, signal.SIGSTOP)
            t_stop = time.monotonic()
            try:
                successor = wait_for(
                    "the successor's start",
                    lambda: next((s for s in ledger.starts(name) if s[0] > token), None),
                    20.0,
                )
                time.sleep(0.5)  # keep calling the old host a while after the successor
                results = hammer.stop()
            finally:
                os.kill(pid.pid, signal.SIGCONT)
            new_token, _, t_start = successor
            stale_calls = ledger.rows(
                "SELECT t FROM rows WHERE name = ? AND token = ? AND what = 'call' AND t >= ?",
                name,
                token,
                t_start,
            )
            assert not stale_calls, f"calls ran on token {token} after {new_token} started"
            after = [o for t, o in results if t >= t_start]
            assert after and all(not o.startswith("ok") for o in after), after
            refused = [o for t, o in results if t >= t_stop and not o.startswith("ok")]
            assert "NO_LEASE" in refused, f"never saw the sub-lease refusal: {set(refused)}"
            # The successor, or a later activation: the resumed node rejoins, and when it
            # owns the name the name moves back to it by handoff (a newer token again).
            answered = int(client.call(name, b"token", idempotent=True))
            assert answered >= new_token, f"answered by token {answered}, older than {new_token}"
