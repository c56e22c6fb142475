"""Tokens, roles and permissions on name prefixes: the pure part of client auth.

Rules
-----
1. A token file (TOML) defines roles and the tokens (or certificate identities) that hold
   them::

       [roles.billing]                 # permission = name prefixes it applies to
       read  = ["billing/", "shared/"]
       call  = ["billing/"]
       write = ["billing/"]

       [roles.ops]
       read = [""]                     # "" is a prefix of every name
       admin = [""]

       [tokens.billing]                # the client sends "Bearer billing.<secret>"
       role = "billing"
       secret = "sha256:<salt hex>:<digest hex>"   # `registry auth hash-token billing`

   With ``auth = "mtls"`` a client certificate's CN is looked up in ``[tokens]`` (its
   ``secret`` is not needed).
2. Permissions: ``read`` (WhereIs, List, Watch, Members), ``call`` (Call, Cast,
   MultiCall, Publish), ``write`` (Register, Unregister, Join, Leave), ``admin``
   (membership, drain, snapshot). One does not imply another. A permission holds for a
   name when one of its prefixes starts the name; for a group the same, on the group.
3. Default deny: a token without a role, or a role without the permission, gets nothing.
4. Secrets are random (``hash-token`` makes 32 bytes), so a salted SHA-256 is enough to
   keep a stolen token file from being replayed; comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from registry.core.errors import ConfigError

PERMISSIONS = ("read", "call", "write", "admin")


@dataclass(frozen=True, slots=True, kw_only=True)
class Role:
    name: str
    grants: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """permission -> name prefixes."""

    def allows(self, permission: str, name: str) -> bool:
        return any(name.startswith(prefix) for prefix in self.grants.get(permission, ()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Caller:
    """An authenticated client: its token (or certificate) name and role."""

    name: str
    role: Role
    authorization: str = ""
    """The ``authorization`` header it sent (forwarded as is to another node)."""

    def allows(self, permission: str, name: str) -> bool:
        return self.role.allows(permission, name)

    def denial(self, permission: str, verb: str, name: str) -> str:
        """The PERMISSION_DENIED message: what was asked and what it needs."""
        return (
            f"token {self.name!r} may not {verb} {name!r}: needs {permission} on "
            f"{needed_prefix(name)!r}"
        )


def needed_prefix(name: str) -> str:
    """The prefix a grant would need: the name's first segment (``alice/``), else it."""
    head, sep, _ = name.partition("/")
    return head + sep if sep else name


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenEntry:
    name: str
    role: str
    secret: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenFile:
    roles: dict[str, Role]
    tokens: dict[str, TokenEntry]

    @staticmethod
    def load(path: Path) -> TokenFile:
        """Parse and check ``path``; ``ConfigError`` names what is wrong."""
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"token file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"token file {path} is not valid TOML: {exc}") from None
        return TokenFile.parse(raw, str(path))

    @staticmethod
    def parse(raw: dict[str, object], where: str) -> TokenFile:
        unknown = sorted(set(raw) - {"roles", "tokens"})
        if unknown:
            raise ConfigError(f"token file {where}: unknown table(s) {', '.join(unknown)}")
        roles: dict[str, Role] = {}
        for name, grants in dict(raw.get("roles") or {}).items():  # type: ignore[call-overload]
            if not isinstance(grants, dict) or set(grants) - set(PERMISSIONS):
                raise ConfigError(
                    f"token file {where}: role {name!r} may only grant {', '.join(PERMISSIONS)}"
                )
            checked = {}
            for permission, prefixes in grants.items():
                if not isinstance(prefixes, list) or not all(isinstance(p, str) for p in prefixes):
                    raise ConfigError(
                        f"token file {where}: role {name!r} {permission} must be a list of "
                        "name prefixes"
                    )
                checked[permission] = tuple(prefixes)
            roles[name] = Role(name=name, grants=checked)
        tokens: dict[str, TokenEntry] = {}
        for name, entry in dict(raw.get("tokens") or {}).items():  # type: ignore[call-overload]
            if "." in name or not name:
                raise ConfigError(f"token file {where}: token name {name!r} must not contain '.'")
            if not isinstance(entry, dict) or not isinstance(entry.get("role"), str):
                raise ConfigError(f'token file {where}: token {name!r} needs role = "..."')
            if entry["role"] not in roles:
                raise ConfigError(
                    f"token file {where}: token {name!r} has unknown role {entry['role']!r}"
                )
            secret = entry.get("secret", "")
            if secret and not _valid_hash(str(secret)):
                raise ConfigError(
                    f"token file {where}: token {name!r} secret must be "
                    "sha256:<salt hex>:<digest hex> (see `registry auth hash-token`)"
                )
            tokens[name] = TokenEntry(name=name, role=entry["role"], secret=str(secret))
        return TokenFile(roles=roles, tokens=tokens)

    def authenticate(self, bearer: str) -> TokenEntry | None:
        """The token ``<name>.<secret>`` names, if its secret matches; else ``None``."""
        name, sep, secret = bearer.partition(".")
        entry = self.tokens.get(name)
        if not sep or entry is None or not entry.secret:
            return None
        return entry if verify(secret, entry.secret) else None

    def caller(self, entry: TokenEntry, authorization: str = "") -> Caller:
        return Caller(name=entry.name, role=self.roles[entry.role], authorization=authorization)


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.sha256(salt + secret.encode()).hexdigest()
    return f"sha256:{salt.hex()}:{digest}"


def verify(secret: str, stored: str) -> bool:
    _, salt, digest = stored.split(":")
    mine = hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()
    return hmac.compare_digest(mine, digest)


def new_token(name: str) -> tuple[str, str]:
    """A fresh token for ``name``: (what the client sends, what the token file keeps)."""
    secret = secrets.token_urlsafe(32)
    return f"{name}.{secret}", hash_secret(secret)


def _valid_hash(stored: str) -> bool:
    parts = stored.split(":")
    if len(parts) != 3 or parts[0] != "sha256":
        return False
    try:
        bytes.fromhex(parts[1])
        bytes.fromhex(parts[2])
    except ValueError:
        return False
    return len(parts[2]) == 64
