"""The SDK-based CLI commands (``registry/cli/sdk_commands.py``) against a real cluster:
join, members, publish, cast, multi-call (with a partial failure and its reason), watch
and leave, each with ``--json``; several seeds in ``--addr``, the first one dead."""

from __future__ import annotations

import json
from typing import Any

import pytest

from registry.cli import main
from tests.cluster.harness import LocalCluster, free_ports, wait_for

P = "cli/sdk/"


def _json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0) -> Any:
    assert main([*argv, "--json"]) == code
    lines = capsys.readouterr().out.strip().splitlines()
    return [json.loads(line) for line in lines] if argv[0] == "watch" else json.loads(lines[-1])


def test_group_cast_multi_call_and_watch_commands(
    calm_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    addr = ["--addr", f"{dead},{calm_cluster.nodes['n2'].grpc_addr}"]
    for name, kind in ((P + "count", "counter"), (P + "echo", "echo")):
        calm_cluster.stub("n1").Register(_spec(name, kind), timeout=10)
    group = P + "all"
    for name in (P + "count", P + "echo"):
        joined = _json(capsys, ["join", group, name, *addr])
        assert joined["group"] == group and joined["index"] > 0
    assert _json(capsys, ["members", group, *addr])["names"] == [P + "count", P + "echo"]
    assert _json(capsys, ["publish", group, "incr", *addr]) == {"group": group, "delivered": 2}
    assert _json(capsys, ["cast", P + "count", "incr", *addr])["sent"] is True
    wait_for(
        "both increments",
        lambda: calm_cluster.stub("n3").Call(_call(P + "count", b"get"), timeout=5).payload == b"2",
        10,
    )
    results = _json(capsys, ["multi-call", group, "get", *addr])["results"]
    assert results[P + "count"] == {"reply": "2"}
    assert results[P + "echo"] == {"reply": "get"}
    results = _json(capsys, ["multi-call", group, "bogus", *addr], code=1)["results"]
    assert results[P + "count"]["error"] == "WORKER_ERROR"
    events = _json(capsys, ["watch", P, "--until-synced", *addr])
    assert events[0]["event"] == "reset" and events[-1]["event"] == "synced"
    placed = {e["location"]["name"] for e in events if e["event"] == "placed"}
    assert placed == {P + "count", P + "echo"}
    assert _json(capsys, ["leave", group, P + "echo", *addr])["name"] == P + "echo"
    assert _json(capsys, ["members", group, *addr])["names"] == [P + "count"]
    error = _json(capsys, ["members", P + "nogroup", *addr], code=1)
    assert error["error"] == "NOT_FOUND" and "no group" in error["message"]


def _spec(name: str, kind: str) -> Any:
    from registry.v1 import registry_pb2 as pb

    return pb.RegisterRequest(spec=pb.NameSpec(name=name, kind=kind))


def _call(name: str, payload: bytes) -> Any:
    from registry.v1 import registry_pb2 as pb

    return pb.CallRequest(name=name, payload=payload)


def test_register_whereis_call_ls_status_unregister_on_the_sdk(
    calm_cluster: LocalCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    c = calm_cluster
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    addr = ["--addr", f"{dead},{c.nodes['n3'].grpc_addr}"]
    name = P + "visits"
    assert _json(capsys, ["register", name, "--kind", "counter", *addr])["index"] > 0
    taken = _json(capsys, ["register", name, "--kind", "counter", *addr], code=1)
    assert taken["error"] == "NAME_TAKEN"
    assert _json(capsys, ["call", name, "incr", *addr]) == {"name": name, "reply": "1"}
    where = _json(capsys, ["whereis", name, "--consistent", *addr])
    owner, token = c.owner(name)
    assert (where["node"], where["token"], where["address"]) == (
        owner,
        token,
        c.nodes[owner].grpc_addr,
    )
    listed = _json(capsys, ["ls", "--prefix", name, *addr])
    assert [row["name"] for row in listed["names"]] == [name] and not listed["truncated"]
    status = _json(capsys, ["status", *addr])
    assert status["leader"] in c.ids and sorted(m["id"] for m in status["members"]) == c.ids
    assert _json(capsys, ["unregister", name, *addr])["name"] == name
    assert _json(capsys, ["whereis", P + "nobody", *addr], code=1)["found"] is False
    assert main(["members", P + "no-group", *addr]) == 1
    assert "error: NOT_FOUND:" in capsys.readouterr().err
