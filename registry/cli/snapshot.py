"""``registry snapshot save FILE`` and ``registry snapshot restore FILE …`` (backups).

``save`` asks one node (``--addr``), which relays the leader's consistent snapshot, and
writes FILE only once its checksum verifies. ``restore`` writes one node's empty data
directory of a *new* cluster (run it once per node, with the same ``--peers``); see
``registry/node/backup.py`` and docs/operations.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from registry.cli.connection import (
    DEFAULT_ADDR,
    BadConnectionArgs,
    add_connection_args,
    admin_channel,
    connection_from_args,
)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    snapshot = commands.add_parser(
        "snapshot",
        help="save a consistent snapshot of a running cluster, or restore one (admin)",
        description="Backups: `save` takes a consistent snapshot from the leader, with a "
        "checksum; `restore` builds one node's data directory of a new cluster from it.",
    )
    actions = snapshot.add_subparsers(dest="action", metavar="ACTION", required=True)
    save = actions.add_parser("save", help="write the leader's snapshot to FILE")
    save.add_argument("file", type=Path)
    save.add_argument("--addr", help=f"node address (default $REGISTRY_ADDR or {DEFAULT_ADDR})")
    save.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    add_connection_args(save)
    save.set_defaults(handler=_save)
    restore = actions.add_parser(
        "restore", help="create a data directory of a new cluster from FILE"
    )
    restore.add_argument("file", type=Path)
    restore.add_argument("--data-dir", type=Path, required=True, help="must not exist or be empty")
    restore.add_argument("--id", required=True, help="the node this data directory is for")
    restore.add_argument(
        "--peers",
        required=True,
        help="the new cluster's voters: n1=host:port,n2=…  (the same for every node)",
    )
    restore.add_argument(
        "--cluster-id",
        default="",
        help="the new cluster's id (default: derived from the file and --peers)",
    )
    restore.set_defaults(handler=_restore)


def _save(args: argparse.Namespace) -> int:
    import grpc

    from registry.node.backup import BadSnapshotFile, write_verified
    from registry.v1 import admin_pb2 as apb
    from registry.v1 import admin_pb2_grpc

    try:
        conn = connection_from_args(args)
    except BadConnectionArgs as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    ch, raw = admin_channel(conn, [("grpc.max_receive_message_length", 64 << 20)])
    with raw:
        try:
            chunks = list(
                admin_pb2_grpc.AdminStub(ch).SnapshotSave(
                    apb.SnapshotSaveRequest(), timeout=args.timeout
                )
            )
            snap = write_verified(chunks, args.file)
        except grpc.RpcError as exc:
            print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
            return 1
        except (BadSnapshotFile, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(
        f"saved {args.file}: index {snap.index}, term {snap.term}, {snap.names} names, "
        f"sha256 {snap.sha256}, in {time.monotonic() - started:.2f} s"
    )
    return 0


def _restore(args: argparse.Namespace) -> int:
    from registry.core.errors import ConfigError
    from registry.node.backup import restore

    started = time.monotonic()
    try:
        peers = dict(p.split("=", 1) for p in args.peers.split(","))
        if args.id not in peers:
            raise ConfigError(f"--id {args.id} is not among --peers {sorted(peers)}")
        snap, cluster = restore(args.file, args.data_dir, peers, args.cluster_id)
    except ValueError as exc:  # ConfigError is one; also a malformed --peers
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"restored {args.file} (index {snap.index}, {snap.names} names) into {args.data_dir} "
        f"for {args.id}; cluster id {cluster}; voters {', '.join(sorted(peers))} "
        f"({time.monotonic() - started:.2f} s). Start every node with --cluster-id {cluster}."
    )
    return 0
