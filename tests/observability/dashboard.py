"""Reading the Grafana dashboard (``deploy/grafana/registry.json``) the way the tests need:
its query targets, the metric names each PromQL expression uses, and the expression as
Prometheus would receive it once Grafana has filled in the variables."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "registry.json"
METRIC_PREFIXES = ("registry_", "process_")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

# What Grafana substitutes before a query reaches Prometheus (all nodes, a 1-minute rate).
VARIABLES = {"$__rate_interval": "1m", "$instance": ".*"}

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


@dataclass(frozen=True, slots=True)
class Target:
    panel: str
    ref: str
    expr: str
    datasource: dict[str, Any] | None


def load() -> dict[str, Any]:
    value = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(value, dict), f"{DASHBOARD}: not a JSON object"
    return value


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows; rows themselves excluded."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def targets(dashboard: dict[str, Any]) -> list[Target]:
    return [
        Target(
            panel=panel.get("title", "?"),
            ref=target.get("refId", "?"),
            expr=target.get("expr", ""),
            datasource=target.get("datasource"),
        )
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
    ]


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects (``registry_*`` and ``process_*``), as written
    (``registry_rpc_seconds_bucket`` stays a ``_bucket`` series name).

    Label values, label matchers, ranges and grouping clauses are removed first, so that
    ``sum by (method)`` or ``{state="up"}`` never read as metric names."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    return {word for word in _IDENTIFIER.findall(text) if word.startswith(METRIC_PREFIXES)}


def family_of(series: str, histograms: set[str]) -> str:
    """The metric family a series name belongs to: ``x_bucket``/``x_count``/``x_sum``
    belong to ``x`` when ``x`` is a histogram; anything else is its own family."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = series.removesuffix(suffix)
        if base != series and base in histograms:
            return base
    return series


def substituted(expr: str) -> str:
    """``expr`` with the dashboard's variables replaced as Grafana would."""
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable left in {expr!r}"
    return expr
