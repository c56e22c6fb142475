"""The token file, roles and the auth config rules (issue 16), without a node."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.core.errors import ConfigError
from registry.node.auth.policy import TokenFile, hash_secret, needed_prefix, new_token, verify
from registry.node.config import load

ROLES = {
    "roles": {"billing": {"read": ["billing/", "shared/"], "write": ["billing/"]}},
}


def test_a_token_authenticates_only_with_its_secret_and_gets_its_role() -> None:
    token, stored = new_token("billing")
    file = TokenFile.parse(
        {**ROLES, "tokens": {"billing": {"role": "billing", "secret": stored}}}, "t"
    )
    entry = file.authenticate(token)
    assert entry is not None and entry.role == "billing"
    assert file.authenticate(token + "x") is None
    assert file.authenticate("other." + token.partition(".")[2]) is None
    assert file.authenticate(token.partition(".")[2]) is None  # no name
    caller = file.caller(entry)
    assert caller.allows("read", "shared/doc") and caller.allows("write", "billing/a")
    assert not caller.allows("write", "shared/doc") and not caller.allows("call", "billing/a")
    assert caller.denial("write", "unregister", "alice/x") == (
        "token 'billing' may not unregister 'alice/x': needs write on 'alice/'"
    )


def test_hashes_are_salted() -> None:
    assert hash_secret("s") != hash_secret("s")
    assert verify("s", hash_secret("s")) and not verify("t", hash_secret("s"))
    assert needed_prefix("plain") == "plain"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ({"roles": {"r": {"delete": [""]}}}, "may only grant"),
        ({"roles": {"r": {"read": "x/"}}}, "list of name prefixes"),
        ({**ROLES, "tokens": {"t": {"role": "nope"}}}, "unknown role"),
        ({**ROLES, "tokens": {"a.b": {"role": "billing"}}}, "must not contain '.'"),
        ({**ROLES, "tokens": {"t": {"role": "billing", "secret": "plain"}}}, "sha256:"),
        ({"users": {}}, "unknown table"),
    ],
)
def test_a_bad_token_file_is_refused_naming_the_problem(
    raw: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        TokenFile.parse(raw, "t")


def test_auth_off_only_on_loopback_and_tokens_need_tls_off_loopback(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="auth is off"):
        load(None, id="n1", listen="0.0.0.0:7400", insecure_peers=True)
    assert load(None, id="n1", listen="0.0.0.0:7400", insecure_peers=True, insecure_clients=True)
    with pytest.raises(ConfigError, match="needs token_file"):
        load(None, id="n1", auth="tokens")
    with pytest.raises(ConfigError, match="need client TLS"):
        load(
            None, id="n1", listen="0.0.0.0:7400", insecure_peers=True, auth="tokens", token_file="t"
        )
    with pytest.raises(ConfigError, match="auth must be one of"):
        load(None, id="n1", auth="maybe")
