"""The table printed at the end: metric, value, target, pass/miss, reference ratio."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from registry.bench.results import Figure, SectionResult, fmt

Row = tuple[str, str, str, str, str]


def header(meta: dict[str, Any]) -> list[str]:
    m, p = meta["machine"], meta["params"]
    return [
        f"registry bench — {meta['started_at']} — {m['cores']} cores, Python {m['python']}, "
        f"grpcio {m['grpcio']}, load avg {m['loadavg_start']}",
        f"{p['nodes']} nodes, preset {p['preset']}, "
        + (
            "fsync on (the node default: every entry fsync'd before it is acknowledged)"
            if p.get("fsync", True)
            else "FSYNC OFF (--no-fsync, nodes and etcd: NOT durable; where the time goes)"
        )
        + f", {p['names']:,} names, {p['ops']:,} ops per "
        f"latency row{', quick' if p['quick'] else ''}",
    ]


def _row(f: Figure) -> Row:
    target = f"{f.target} {f.unit}" if f.target is not None else ""
    ratio = ""
    if f.ratio is not None:
        ratio = f"{f.ratio.value:.2f}× {f.ratio.reference}"
        if f.ratio.target is not None:
            ratio += f" (target {f.ratio.target})"
    return f"  {f.label}", f"{fmt(f.value)} {f.unit}", target, f.verdict, ratio


def render(meta: dict[str, Any], sections: Iterable[SectionResult]) -> str:
    """The header, one block per section (a title line, then aligned figure rows), and
    the notes of figures and targets at the end."""
    blocks: list[tuple[str, list[Row]]] = []
    notes: list[str] = []
    for section in sections:
        title = f"[{section.name}]"
        if section.skipped:
            title += f" skipped: {section.skipped}"
        if section.error:
            title += f" ERROR: {section.error.splitlines()[0][:200]}"
        blocks.append((title, [_row(f) for f in section.figures]))
        for f in section.figures:
            extra = [x for x in (f.note, f.target.note if f.target else "") if x]
            if extra:
                notes.append(f"  {f.key}: {'; '.join(extra)}")
    head: Row = ("metric", "value", "target", "", "ratio to reference")
    rows = [head] + [r for _, block in blocks for r in block]
    w = [max(len(r[i]) for r in rows) for i in range(4)]

    def line(r: Row) -> str:
        return f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:<{w[2]}}  {r[3]:<{w[3]}}  {r[4]}".rstrip()

    out = [*header(meta), line(head)]
    for title, block in blocks:
        out.append(title)
        out.extend(line(r) for r in block)
    if notes:
        out.append("notes:")
        out.extend(notes)
    return "\n".join(out)
