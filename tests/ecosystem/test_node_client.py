"""The Node.js example (``examples/node-client``, @grpc/grpc-js + @grpc/proto-loader from
``protos/`` alone) against a real 3-node cluster: it installs from its lock file, then
registers, calls, looks up and watches a name, and what it saw must agree with the
cluster (the same node and fencing token everywhere; a second register refused with the
machine-readable reason ``NAME_TAKEN``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from registry.testing.local_cluster import LocalCluster
from registry.v1 import registry_pb2 as pb
from tests.system_tools import require_tool

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node-client"


def test_node_client_registers_calls_looks_up_and_watches(tmp_path: Path) -> None:
    node = require_tool("node", "nodejs")
    npm = require_tool("npm", "npm")
    installed = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=EXAMPLE,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, f"npm ci failed:\n{installed.stdout}\n{installed.stderr}"
    with LocalCluster(tmp_path, 3, preset="local") as cluster:
        cluster.start(timeout=30.0)
        seed_node = "n2"
        seed = cluster.nodes[seed_node].grpc_addr
        run = subprocess.run(
            [node, "client.js", seed, "node-echo"],
            cwd=EXAMPLE,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, f"the Node.js client failed:\n{run.stdout}\n{run.stderr}"
        seen = json.loads(run.stdout.strip().splitlines()[-1])
        owner, token = cluster.owner("node-echo")
        leader = cluster.status("n1").leader
        reply = cluster.stub("n1").Call(pb.CallRequest(name="node-echo", payload=b"x"), timeout=10)
    assert int(seen["registered_index"]) > 0
    # Read from the google.rpc.Status details: reason and the leader the follower asked.
    assert seen["second_register"] == {
        "code": "ALREADY_EXISTS",
        "reason": "NAME_TAKEN",
        "leader": leader if seed_node != leader else "",
    }
    assert seen["call"] == {"payload": "hello from node", "node": owner, "token": str(token)}
    assert seen["whereis"] == {
        "node": owner,
        "address": cluster.nodes[owner].grpc_addr,
        "token": str(token),
    }
    assert seen["watch"] == [{"kind": "KIND_PLACED", "name": "node-echo", "node": owner}]
    assert (reply.node, reply.payload) == (owner, b"x")
