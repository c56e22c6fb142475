"""``auth = "mtls"`` (issue 16): the client certificate's CN is the caller, looked up in
the token file; a node forwarding for it sends ``registry-caller``, trusted only from a
peer's certificate."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from registry.client import SyncClient, Tls, Unauthenticated
from registry.node.certs import issue
from registry.v1 import registry_pb2 as pb
from tests.cluster.harness import LocalCluster
from tests.cluster.harness import rpc_error as _rpc_error

TOKENS = """
[roles.alice]
read = ["alice/"]
write = ["alice/"]
call = ["alice/"]

[tokens.alice]
role = "alice"
"""


@pytest.fixture(scope="module")
def c(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("mtls")
    (root / "tokens.toml").write_text(TOKENS, encoding="utf-8")
    certs = root / "certs"
    cluster = LocalCluster(
        root,
        3,
        certs=certs,
        client_tls=True,
        config={
            "auth": "mtls",
            "client_ca": str(certs / "ca.pem"),
            "token_file": str(root / "tokens.toml"),
        },
    )
    try:
        cluster.start(timeout=30)
        yield cluster
    finally:
        cluster.close()


def test_the_certificate_names_the_caller_and_forwarding_keeps_it(c: LocalCluster) -> None:
    assert c.client_tls is not None
    alice = issue(c.root / "certs", "alice")
    leader = c.wait_ready()
    follower = next(n for n in c.ids if n != leader)
    tls = Tls(ca=c.client_tls.ca, cert=alice.cert, key=alice.key)
    with SyncClient(c.nodes[follower].grpc_addr, tls=tls, cache=False) as client:
        client.register("alice/svc", kind="echo")  # forwarded to the leader for alice
        assert client.call("alice/svc", b"hi") == b"hi"
        with pytest.raises(Unauthenticated, match="needs write on 'bob/'"):
            client.register("bob/svc", kind="echo")
    # The harness's own certificate (CN "harness") is valid TLS but no identity.
    exc: Any = _rpc_error(
        lambda: c.stub(leader).WhereIs(pb.WhereIsRequest(name="alice/svc"), timeout=5)
    )
    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
    assert dict(exc.trailing_metadata())["registry-reason"] == "UNKNOWN_IDENTITY"
    # Claiming to forward for alice is ignored from a certificate that is not a peer's.
    exc = _rpc_error(
        lambda: c.stub(leader).WhereIs(
            pb.WhereIsRequest(name="alice/svc"), metadata=(("registry-caller", "alice"),), timeout=5
        )
    )
    assert exc.code() is grpc.StatusCode.UNAUTHENTICATED
