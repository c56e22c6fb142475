"""``registry doctor --data-dir D``: the node's start-up checks, without starting it.

Prints what the data directory holds (names, term, vote, commit, log range, snapshot,
incarnation) and every problem found, one a line. Changes nothing on disk (a torn tail
that a start would cut is reported as a note). Exit 0 healthy, 2 damaged (a node would
refuse to start on it), 1 not checked (no such directory, or a node holds its lock).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check a stopped node's data directory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    doctor.add_argument("--data-dir", type=Path, required=True, help="the node's data_dir")
    doctor.set_defaults(handler=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from registry.node.storage_check import inspect

    report = inspect(args.data_dir)
    for line in report.lines():
        print(line)
    return report.exit_code
