"""registry.core stays sans-IO: no module under registry/core imports IO, clocks,
randomness, threads or a higher layer (DESIGN.md §2, house rule 1).

Relative imports are resolved first, so ``from ..sim import x`` inside the core is caught
like ``from registry.sim import x``. The core is the bottom layer, so it may import nothing
from ``registry`` outside ``registry.core``. Imports under ``if TYPE_CHECKING:`` never run
and are allowed (e.g. ``from random import Random`` to annotate an injected RNG).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_DIR = ROOT / "registry" / "core"
CORE_PACKAGE = "registry.core"
ABOVE_TOP = "<above the top-level package>"

FORBIDDEN = {
    "asyncio": "IO and an event loop",
    "time": "reads the wall clock; use integer ticks",
    "socket": "network IO",
    "threading": "threads",
    "grpc": "network IO",
    "random": "a global RNG; inject a seeded random.Random",
    "prometheus_client": "metrics belong to the node",
    "subprocess": "process IO",
    "os": "file and process IO",
    "registry.node": "a higher layer",
    "registry.client": "a higher layer",
    "registry.worker": "a higher layer",
    "registry.sim": "a higher layer",
    "registry.wire": "a higher layer",
    "registry.cli": "a higher layer",
    "registry.v1": "generated wire code; translate in registry.wire",
}


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _why_forbidden(module: str) -> str | None:
    if module == ABOVE_TOP:
        return "a relative import that climbs above the top-level package"
    for banned, why in FORBIDDEN.items():
        if _within(module, banned):
            return why
    if _within(module, "registry") and not _within(module, CORE_PACKAGE):
        return f"the core may import only {CORE_PACKAGE}.*"
    return None


def _is_type_checking_guard(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking_guard(node):
            stack.extend(node.orelse)
            stack.append(node.test)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _imported(node: ast.AST, package: str) -> Iterator[tuple[str, str]]:
    """(module, source text) for each module an import statement or call may load."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, f"import {alias.name}"
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        names = [alias.name for alias in node.names]
        text = f"from {'.' * node.level}{base} import {', '.join(names)}"
        if node.level:
            parts = package.split(".")
            if node.level - 1 >= len(parts):
                yield ABOVE_TOP, text
                return
            anchor = ".".join(parts[: len(parts) - (node.level - 1)])
            base = f"{anchor}.{base}" if base else anchor
        if CORE_PACKAGE.startswith(base + ".") and "*" not in names:
            # `from registry import sim` loads registry.sim; `from registry import core` is fine.
            for name in names:
                yield f"{base}.{name}", text
        else:
            yield base, text
    elif (
        isinstance(node, ast.Call)
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and (
            (isinstance(node.func, ast.Name) and node.func.id == "__import__")
            or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
        )
    ):
        yield node.args[0].value, ast.unparse(node)


def find_violations(source: str, filename: str, package: str) -> list[str]:
    """Report each forbidden import in ``source`` as ``filename:line: text (module: why)``.

    ``package`` is the package the module lives in (for resolving relative imports).
    """
    tree = ast.parse(source, filename=filename)
    found: set[tuple[int, str]] = set()
    for node in _runtime_nodes(tree):
        for module, text in _imported(node, package):
            why = _why_forbidden(module)
            if why is not None:
                found.add((getattr(node, "lineno", 0), f"{text} ({module}: {why})"))
    return [f"{filename}:{line}: {message}" for line, message in sorted(found)]


def _core_modules() -> list[Path]:
    return sorted(CORE_DIR.rglob("*.py"))


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    # A package's __init__ lives in the package itself; a module lives in its parent.
    return ".".join(parts[:-1])


def test_core_imports_no_io_and_no_higher_layer() -> None:
    modules = _core_modules()
    assert modules, f"no modules found under {CORE_DIR}"
    violations = [
        v
        for path in modules
        for v in find_violations(
            path.read_text(encoding="utf-8"),
            str(path.relative_to(ROOT)),
            _package_of(path),
        )
    ]
    assert not violations, "registry.core must stay sans-IO:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    "source",
    [
        "import time",
        "import os.path",
        "import asyncio as aio",
        "from random import Random",
        "from registry.sim import x",
        "from registry import sim",
        "from registry import RegistryError",
        "import registry",
        "import registry.cli.main",
        "from registry.v1 import raft_pb2",
        "from ..sim import x",
        "from .. import wire",
        "from ..placement_helpers import ring",
        "from .... import anything",
        "def f():\n    import socket",
        "if True:\n    import threading",
        "__import__('subprocess')",
        "importlib.import_module('grpc.aio')",
    ],
)
def test_checker_flags(source: str) -> None:
    found = find_violations(source, "registry/core/x.py", "registry.core")
    assert len(found) == 1, found
    assert found[0].startswith("registry/core/x.py:"), found


@pytest.mark.parametrize(
    "source",
    [
        "from registry.core.messages import Entry",
        "from registry.core import messages",
        "from registry import core",
        "from .messages import Entry",
        "from . import config",
        "import enum, math, dataclasses",
        "import timeit",
        "from collections.abc import Sequence",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from random import Random",
    ],
)
def test_checker_accepts(source: str) -> None:
    assert find_violations(source, "registry/core/x.py", "registry.core") == []


def test_checker_reports_file_line_and_import() -> None:
    source = "from __future__ import annotations\n\nimport enum\nimport time\n"
    assert find_violations(source, "registry/core/raft.py", "registry.core") == [
        "registry/core/raft.py:4: import time (time: reads the wall clock; use integer ticks)"
    ]


def test_checker_resolves_relative_imports_in_subpackages() -> None:
    # registry/core/state/fsm.py: `..` is registry.core (fine), `...` is registry (not).
    assert find_violations("from ..messages import Entry", "f.py", "registry.core.state") == []
    assert find_violations("from ...sim import x", "f.py", "registry.core.state") == [
        "f.py:1: from ...sim import x (registry.sim: a higher layer)"
    ]


# -- the shell's seam with the core ---------------------------------------------------
# Only the driver (and the ready loop it runs, and the simulator that stands in for it)
# holds a ``Replica``; every other part of the shell reads a ``ReplicaView`` and changes
# the core through the driver's inputs. No part of the node imports the wiring module.

REGISTRY_DIR = ROOT / "registry"
MAY_HOLD_REPLICA = ("registry/core/", "registry/sim/")
MAY_HOLD_REPLICA_FILES = {"registry/node/driver.py", "registry/node/ready_loop.py"}
WIRING = "registry.node.server"


def seam_violations(source: str, filename: str, package: str) -> list[str]:
    """``Replica`` imported or ``.replica`` read outside the driver; the wiring module
    imported from inside ``registry.node`` (under ``TYPE_CHECKING`` too: a cycle is a
    cycle even when only the type checker follows it)."""
    tree = ast.parse(source, filename=filename)
    holds_replica = filename in MAY_HOLD_REPLICA_FILES or filename.startswith(MAY_HOLD_REPLICA)
    in_node = filename.startswith("registry/node/") and filename != "registry/node/server.py"
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if not holds_replica:
            if isinstance(node, ast.Attribute) and node.attr == "replica":
                found.add((line, f"{ast.unparse(node)} (Replica internals: read a ReplicaView)"))
            if (
                isinstance(node, ast.ImportFrom)
                and (node.module or "").endswith("core.replica")
                and any(alias.name == "Replica" for alias in node.names)
            ):
                found.add((line, "imports Replica (only the driver holds one)"))
        if in_node:
            for module, text in _imported(node, package):
                if _within(module, WIRING):
                    found.add((line, f"{text} (imports the wiring module {WIRING})"))
    return [f"{filename}:{line}: {message}" for line, message in sorted(found)]


def test_only_the_driver_holds_the_replica_and_nothing_imports_the_wiring() -> None:
    modules = sorted(REGISTRY_DIR.rglob("*.py"))
    violations = [
        v
        for path in modules
        if "v1" not in path.relative_to(REGISTRY_DIR).parts[:1]
        for v in seam_violations(
            path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix(), _package_of(path)
        )
    ]
    assert not violations, "the shell reaches past its seam:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    "source",
    [
        "x = self.node.driver.replica.raft.term",
        "from registry.core.replica import ReplicaReady, Replica",
        "if TYPE_CHECKING:\n    from registry.node.server import Node",
        "from .server import Node",
        "import registry.node.server",
    ],
)
def test_seam_checker_flags(source: str) -> None:
    found = seam_violations(source, "registry/node/x.py", "registry.node")
    assert len(found) == 1, found


@pytest.mark.parametrize(
    "source",
    [
        "x = self.driver.view.term",
        "from registry.core.replica import ReplicaReady, Start",
        "from registry.node.seams import Replicated",
        "x = ready.raft.messages",
    ],
)
def test_seam_checker_accepts(source: str) -> None:
    assert seam_violations(source, "registry/node/x.py", "registry.node") == []
    assert seam_violations("x = d.replica", "registry/node/driver.py", "registry.node") == []
