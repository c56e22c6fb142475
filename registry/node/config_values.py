"""Typed node config values: from TOML, from ``REGISTRY_*`` environment variables.

Rules:

1. Each ``NodeConfig`` field has one kind, read from its annotation: text, bool, whole
   number, size (a whole number of bytes: the fields named ``*_bytes``), seconds (a
   number), list of text, table of text, path. ``[timing]`` entries are seconds.
2. From TOML (and from flags) a value must already be of its kind: a string where a list,
   a bool or a number is expected is an error that names the field (TOML has real
   booleans, numbers and arrays; ``roles = "web"`` is not read as ``('w','e','b')``, nor
   ``fsync = "false"`` as true). The one conversion: a size may be a string with a unit,
   ``"4MB"`` (decimal: KB, MB, GB = 10³, 10⁶, 10⁹) or ``"4MiB"`` (binary: KiB, MiB, GiB).
3. From the environment, ``REGISTRY_<FIELD>`` (``REGISTRY_MAX_PAYLOAD_BYTES=4MiB``,
   ``REGISTRY_FSYNC=false``, ``REGISTRY_ROLES=web,batch``,
   ``REGISTRY_PEERS=n1=10.0.0.1:7400,n2=…``, ``REGISTRY_TIMING_LEASE=2.5``): every value
   is text; booleans are true/false/yes/no/1/0, lists are comma-separated.
4. Precedence: the file, then the environment, then flags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from registry.core.errors import ConfigError
from registry.core.timing import Timing

__all__ = ["ENV_PREFIX", "from_environment", "parse_size", "typed"]

ENV_PREFIX = "REGISTRY_"
TIMING_ENV_PREFIX = ENV_PREFIX + "TIMING_"
_KIND_BY_ANNOTATION = {
    "str": "text",
    "bool": "bool",
    "int": "int",
    "float": "seconds",
    "Path": "path",
    "tuple[str, ...]": "list",
    "dict[str, str]": "table",
}
_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")
_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def _kind(field_name: str, annotation: object) -> str:
    kind = _KIND_BY_ANNOTATION.get(str(annotation), "other")
    return "size" if kind == "int" and field_name.endswith("_bytes") else kind


def kinds(config_type: type) -> dict[str, str]:
    """Field name → kind (rule 1) of a config dataclass."""
    return {f.name: _kind(f.name, f.type) for f in fields(config_type)}


def parse_size(name: str, text: str) -> int:
    """``"4MiB"`` → 4194304; a ConfigError naming ``name`` if it is not a size."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(
            f"{name} must be a number of bytes, optionally with a unit "
            f"(B, KB, MB, GB, KiB, MiB, GiB), e.g. 4MiB (got {text!r})"
        )
    size = float(match.group(1)) * _UNITS[unit]
    if size != int(size):
        raise ConfigError(f"{name} must be a whole number of bytes (got {text!r})")
    return int(size)


def typed(name: str, kind: str, value: Any) -> Any:
    """``value`` (from TOML or a flag) checked against ``kind`` (rule 2)."""
    wrong = f"{name} must be {_EXPECTED.get(kind, kind)} (got {value!r})"
    if kind == "text":
        if not isinstance(value, str):
            raise ConfigError(wrong)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(wrong)
        return value
    if kind in ("int", "size"):
        if kind == "size" and isinstance(value, str):
            return parse_size(name, value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(wrong)
        return value
    if kind == "seconds":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(wrong)
        return float(value)
    if kind == "path":
        if not isinstance(value, str | Path):
            raise ConfigError(wrong)
        return Path(value)
    if kind == "list":
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(wrong)
        return tuple(value)
    if kind == "table":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigError(wrong)
        return dict(value)
    return value


_EXPECTED = {
    "text": "a string",
    "bool": "true or false",
    "int": "a whole number",
    "size": 'a number of bytes (e.g. 4194304 or "4MiB")',
    "seconds": "a number of seconds",
    "path": "a path (a string)",
    "list": 'a list of strings (e.g. ["a", "b"])',
    "table": 'a table of strings (e.g. {n1 = "host:port"})',
}


def _from_text(name: str, kind: str, text: str) -> Any:
    """An environment string as ``kind`` (rule 3)."""
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false (got {text!r})")
    if kind == "int":
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number (got {text!r})") from None
    if kind == "size":
        return parse_size(name, text)
    if kind == "seconds":
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds (got {text!r})") from None
    if kind == "list":
        return tuple(part.strip() for part in text.split(",") if part.strip())
    if kind == "table":
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if not all(len(pair) == 2 for pair in pairs):
            raise ConfigError(f"{name} must look like n1=host:port,n2=host:port (got {text!r})")
        return {k.strip(): v.strip() for k, v in pairs}
    return typed(name, kind, text)


def from_environment(
    environ: Mapping[str, str], field_kinds: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, float]]:
    """``REGISTRY_<FIELD>`` values for the fields in ``field_kinds`` and
    ``REGISTRY_TIMING_<FIELD>`` values for ``[timing]``, typed (rule 3)."""
    values: dict[str, Any] = {}
    for name, kind in field_kinds.items():
        key = ENV_PREFIX + name.upper()
        if key in environ and kind != "other":
            values[name] = _from_text(key, kind, environ[key])
    timing: dict[str, float] = {}
    for name in _timing_fields():
        key = TIMING_ENV_PREFIX + name.upper()
        if key in environ:
            timing[name] = _from_text(key, "seconds", environ[key])
    return values, timing


def typed_timing(values: Mapping[str, Any]) -> dict[str, float]:
    """``[timing]`` entries checked as seconds (unknown names are left to ``preset``)."""
    return {k: typed(f"timing.{k}", "seconds", v) for k, v in values.items()}


def _timing_fields() -> Iterable[str]:
    return (f.name for f in fields(Timing))
