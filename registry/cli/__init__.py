"""The ``registry`` command line (entry point ``registry.cli:main``).

Each command lives in its own module exposing ``register(subparsers)``, which adds its
parser and sets ``handler`` (``Namespace -> exit code``). Adding ``node``, ``dev``,
``status``… is one module and one line in ``COMMANDS``; heavy imports happen inside
handlers so that ``registry --help`` stays instant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from registry.cli import (
    auth,
    bench,
    certs,
    client,
    doctor,
    jepsen,
    member,
    node,
    sdk_commands,
    sim,
    snapshot,
)

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

COMMANDS: tuple[Register, ...] = (
    node.register,
    client.register,
    sdk_commands.register,
    sim.register,
    jepsen.register,
    bench.register,
    doctor.register,
    certs.register,
    member.register,
    snapshot.register,
    auth.register,
)

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="registry",
        description="quorum-registry: a partition-safe registry of named workers.",
    )
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(commands)
    return parser


def _version() -> str:
    from registry import __version__
    from registry.node.peer_protocol import MAX_SUPPORTED, MIN_SUPPORTED, PROTOCOL_VERSION

    return (
        f"quorum-registry {__version__} (peer protocol {PROTOCOL_VERSION}, "
        f"accepts {MIN_SUPPORTED}-{MAX_SUPPORTED})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code (2 for usage errors)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and on usage errors
        return exc.code if isinstance(exc.code, int) else 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)
