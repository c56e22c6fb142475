"""``registry certs init|issue``: a cluster CA and node certificates for peer mTLS."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    certs = commands.add_parser(
        "certs",
        help="create a cluster CA and node certificates for peer mTLS",
        description="Peers authenticate each other with certificates signed by one "
        "cluster CA; a node certificate's CN and SAN are the node id. Keep ca-key.pem "
        "off the nodes: whoever holds it can mint any node identity.",
    )
    sub = certs.add_subparsers(dest="certs_command", metavar="ACTION", required=True)
    init = sub.add_parser("init", help="create ca.pem and ca-key.pem in --dir")
    init.add_argument("--dir", type=Path, default=Path("."), help="where (default .)")
    init.set_defaults(handler=run_init)
    issue = sub.add_parser("issue", help="issue NODE.pem and NODE-key.pem, signed by the CA")
    issue.add_argument("node", metavar="NODE", help="the node id (its CN and first SAN)")
    issue.add_argument("--dir", type=Path, default=Path("."), help="the CA's directory")
    issue.add_argument(
        "--san",
        action="append",
        default=[],
        help="an extra DNS name or IP address (repeatable)",
    )
    issue.set_defaults(handler=run_issue)


def run_init(args: argparse.Namespace) -> int:
    from registry.node.certs import CertError, init_ca

    try:
        path = init_ca(args.dir)
    except (CertError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"CA created: {path} (key: {args.dir / 'ca-key.pem'}, keep it off the nodes)")
    return 0


def run_issue(args: argparse.Namespace) -> int:
    from registry.node.certs import CertError, issue

    try:
        files = issue(args.dir, args.node, sans=tuple(args.san))
    except (CertError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"certificate for {args.node}: {files.cert} (key: {files.key})")
    print(f"  peer_ca = {str(files.ca)!r}")
    print(f"  peer_cert = {str(files.cert)!r}")
    print(f"  peer_key = {str(files.key)!r}")
    return 0
