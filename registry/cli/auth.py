"""``registry auth hash-token NAME --role ROLE``: a new bearer token and its token-file
entry (the secret is shown once; the file keeps only a salted hash)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    auth = commands.add_parser(
        "auth",
        help="make bearer tokens for client authentication",
        description="Clients authenticate with 'authorization: Bearer NAME.SECRET'; the "
        "node's token_file keeps NAME, its role and a salted hash of SECRET.",
    )
    sub = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    hash_token = sub.add_parser(
        "hash-token",
        help="print a new token (for the client) and its [tokens.NAME] entry (for the file)",
    )
    hash_token.add_argument("name", metavar="NAME", help="the token's name (no '.')")
    hash_token.add_argument("--role", required=True, help="a role of the token file")
    hash_token.set_defaults(handler=run_hash_token)


def run_hash_token(args: argparse.Namespace) -> int:
    from registry.node.auth.policy import new_token

    if "." in args.name or not args.name:
        print(f"error: token name {args.name!r} must be non-empty without '.'")
        return 2
    token, stored = new_token(args.name)
    print(f"# the token, for the client only (REGISTRY_TOKEN / --token); shown once:\n# {token}")
    print(f'[tokens.{args.name}]\nrole = "{args.role}"\nsecret = "{stored}"')
    return 0
