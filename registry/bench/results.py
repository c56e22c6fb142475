"""What a section reports: named figures with units, optional targets and references.

A ``Figure`` is one number (``value`` in ``unit``). A ``Target`` says which way is good
and the bound (``≥ 25 000 /s``, ``≤ 1 ms``); ``Figure.verdict`` compares. A figure may
carry a ratio to a reference measured in the same run (``our call throughput / raw gRPC
echo``), which may have its own target (``≥ 0.5``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    op: Literal["<=", ">="]
    bound: float
    note: str = ""
    """Why the bound is what it is, when it is not the issue's figure as is (scaled…)."""

    def met(self, value: float) -> bool:
        return value <= self.bound if self.op == "<=" else value >= self.bound

    def __str__(self) -> str:
        return f"{'≤' if self.op == '<=' else '≥'} {fmt(self.bound)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ratio:
    """``value / reference`` of a figure against one measured in the same run."""

    reference: str
    """The reference figure's key, e.g. ``ref_grpc.echo_c64_per_s``."""
    value: float
    target: Target | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    key: str
    """``section.metric``, stable across versions (the JSON key)."""
    label: str
    """What the table shows."""
    value: float
    unit: str
    target: Target | None = None
    ratio: Ratio | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        """``pass``/``miss`` against the target (the ratio's, when only it has one)."""
        checks = [t.met(v) for t, v in self._checks()]
        if not checks:
            return ""
        return "pass" if all(checks) else "miss"

    def _checks(self) -> list[tuple[Target, float]]:
        out = []
        if self.target is not None:
            out.append((self.target, self.value))
        if self.ratio is not None and self.ratio.target is not None:
            out.append((self.ratio.target, self.ratio.value))
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "unit": self.unit, "label": self.label}
        if self.target is not None:
            out["target"] = asdict(self.target)
        if self.ratio is not None:
            out["ratio"] = asdict(self.ratio)
        if self.verdict:
            out["verdict"] = self.verdict
        if self.note:
            out["note"] = self.note
        return out


@dataclass(slots=True)
class SectionResult:
    name: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    """Everything else worth keeping (per-run values, parameters, counts)."""
    started_at: str = ""
    wall_s: float = 0.0
    skipped: str = ""
    """Why the section did not run (empty: it ran)."""
    error: str = ""
    """The exception that ended it early, if any (figures before it are kept)."""

    def add(self, key: str, label: str, value: float, unit: str, **kwargs: Any) -> Figure:
        figure = Figure(key=f"{self.name}.{key}", label=label, value=value, unit=unit, **kwargs)
        self.figures.append(figure)
        return figure

    def to_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at,
            "wall_s": round(self.wall_s, 3),
            "skipped": self.skipped or None,
            "error": self.error or None,
            "figures": {f.key.split(".", 1)[1]: f.to_json() for f in self.figures},
            "details": self.details,
        }


def fmt(value: float) -> str:
    """A number for the table: 3 significant digits, thousands separated."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
