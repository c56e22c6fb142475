"""Regenerate the protobuf and gRPC code in ``registry/v1/`` from ``protos/``.

Usage: ``python scripts/gen_protos.py [--out DIR]`` (``make gen`` does this). ``--out``
defaults to the repository root, so ``protos/registry/v1/x.proto`` becomes
``registry/v1/x_pb2.py``, ``x_pb2.pyi`` and ``x_pb2_grpc.py``, importable as
``registry.v1.x_pb2``. The output depends only on the protos and on the pinned
grpcio-tools version; ``tests/unit/test_proto_drift.py`` fails when the committed files
differ from a fresh run.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
INIT_TEXT = (
    '"""Generated from protos/ by scripts/gen_protos.py — do not edit.\n\n'
    "Run ``python scripts/gen_protos.py`` after changing a .proto file.\n"
    '"""\n'
)


def proto_files() -> list[Path]:
    return sorted(PROTO_ROOT.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Generate code for every proto under ``protos/`` into ``out``; return the files."""
    from grpc_tools import protoc  # from the `test` extra: pip install -e '.[test]'

    protos = proto_files()
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    packages = sorted({out / p.parent.relative_to(PROTO_ROOT) for p in protos})
    for package in packages:
        package.mkdir(parents=True, exist_ok=True)
        # Drop stale output, so that a removed .proto does not leave its code behind.
        for old in package.iterdir():
            if old.name.endswith(GENERATED_SUFFIXES):
                old.unlink()
    well_known = resources.files("grpc_tools") / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *map(str, protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed (see the messages above)")
    for package in packages:
        (package / "__init__.py").write_text(INIT_TEXT, encoding="utf-8")
    return sorted(
        path
        for package in packages
        for path in package.iterdir()
        if path.name == "__init__.py" or path.name.endswith(GENERATED_SUFFIXES)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", type=Path, default=ROOT, help="output root (default: the repository root)"
    )
    ns = parser.parse_args(argv)
    out: Path = ns.out.resolve()
    for path in generate(out):
        print(path.relative_to(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
