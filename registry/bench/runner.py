"""Run the bench: clusters, sections in order, reference ratios, table and JSON.

Clusters (each closed before the next starts, so they never compete for the CPU):

1. the main cluster (``nodes`` nodes): ``memory`` first, on a fresh cluster, then
   ``registrations`` and ``lookups``;
2. no cluster: the raw gRPC echo reference (``grpc``);
3. a fresh cluster for ``failover`` (it kills and restarts nodes);
4. a fresh cluster for ``rebalance`` (a learner joins it) and heal;
5. a fresh cluster for ``durable`` (its nodes also load the ``ckpt-bench`` worker);
6. etcd (``etcd``), three members.

A section that fails is recorded with its error and the run goes on; ``run`` returns
the JSON document, whose ``ok`` is false if any section failed.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import shutil
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import grpc

from registry.bench import (
    clusters,
    durable_section,
    failover,
    lookups,
    memory,
    rebalance,
    ref_etcd,
    ref_grpc,
    registrations,
)
from registry.bench.load import Progress
from registry.bench.params import Params
from registry.bench.results import Ratio, SectionResult, Target
from registry.bench.table import render
from registry.testing.local_cluster import LocalCluster

SCHEMA = 1
RATIOS: tuple[tuple[str, str, Target | None], ...] = (
    # Against the grpc section's echo, a minute later: no target. The call target is on
    # the lookups section's side-by-side ratio (``call_c*_vs_echo``, lookups docstring).
    ("lookups.call_c64_per_s", "grpc.echo_c64_per_s", None),
    ("lookups.call_c1_per_s", "grpc.echo_c1_per_s", None),
    # What switching processes and channels on each call costs plain gRPC (ref_grpc).
    ("grpc.echo_spread_c1_per_s", "grpc.echo_c1_per_s", None),
    # The call path with one warm host and activation (lookups), against the same echo.
    ("lookups.call_one_name_c1_per_s", "grpc.echo_c1_per_s", None),
    ("registrations.one_by_one_per_s", "etcd.one_by_one_per_s", None),
    ("registrations.one_rpc_each_per_s", "etcd.one_by_one_per_s", None),
    ("registrations.batched_per_s", "etcd.batched_per_s", None),
)
"""(our figure, the reference figure, a target on their ratio)."""
QUIET_SECTIONS = frozenset({"memory", "registrations", "lookups"})
"""Sections after which the cluster must not have changed term or fenced (load only)."""
QUIET_NOTE = "after bootstrap, load alone must cost no election and no fence"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def machine() -> dict[str, Any]:
    import google.protobuf

    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "grpcio": grpc.__version__,
        "protobuf": google.protobuf.__version__,
        "platform": platform.platform(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


class Runner:
    def __init__(self, params: Params, progress: Progress) -> None:
        self.params = params
        self.progress = progress
        self.results: dict[str, SectionResult] = {}

    @contextmanager
    def section(self, name: str, c: LocalCluster | None = None) -> Iterator[SectionResult]:
        """Run one section; with its cluster ``c``, also count the Raft term changes and
        fences it cost (read from the nodes before and after)."""
        result = SectionResult(name=name, started_at=now_iso())
        self.results[name] = result
        started = time.monotonic()
        before = clusters.Churn.read(c) if c is not None else None
        try:
            yield result
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}"
            result.details["traceback"] = traceback.format_exc()
            self.progress.say(f"{name} FAILED: {result.error.splitlines()[0][:300]}")
        finally:
            result.wall_s = time.monotonic() - started
            if c is not None and before is not None:
                self._churn(result, before, clusters.Churn.read(c))

    @staticmethod
    def _churn(result: SectionResult, before: clusters.Churn, after: clusters.Churn) -> None:
        if not (before.term and after.term):
            result.details["churn"] = {"error": "no node answered its term before or after"}
            return
        terms, fences = after.since(before)
        quiet = result.name in QUIET_SECTIONS
        target = Target(op="<=", bound=0, note=QUIET_NOTE) if quiet else None
        result.add("raft_term_changes", "raft term changes", terms, "terms", target=target)
        result.add("fences", "fences", fences, "fences", target=target)
        result.details["churn"] = {
            "term_before": before.term,
            "term_after": after.term,
            "fences_before": before.fences,
            "fences_after": after.fences,
        }

    def wanted(self, *names: str) -> list[str]:
        return [n for n in names if n in self.params.sections]

    @contextmanager
    def cluster(
        self,
        root: Path,
        size: int,
        worker_modules: tuple[str, ...] = (),
    ) -> Iterator[LocalCluster]:
        c = clusters.start(
            root,
            size,
            self.params.preset,
            self.progress,
            fsync=self.params.fsync,
            worker_modules=worker_modules,
        )
        try:
            yield c
        finally:
            self.progress.say("stopping the cluster")
            crashed = c.crashed()
            c.close()
            if crashed:
                raise RuntimeError(f"node process(es) exited on their own: {crashed}; see {root}")

    def run_all(self, root: Path) -> None:
        p = self.params
        main = self.wanted("memory", "registrations", "lookups")
        if main:
            with self._guard(main), self.cluster(root / "main", p.nodes) as c:
                if "memory" in main:
                    with self.section("memory", c) as out:
                        asyncio.run(memory.run(c, p, self.progress, out))
                if "registrations" in main:
                    with self.section("registrations", c) as out:
                        asyncio.run(registrations.run(c, p, self.progress, out))
                if "lookups" in main:
                    with self.section("lookups", c) as out:
                        asyncio.run(lookups.run(c, p, self.progress, out))
        if self.wanted("grpc"):
            with self.section("grpc") as out:
                asyncio.run(ref_grpc.run(p, self.progress, out))
        if self.wanted("failover"):
            with (
                self._guard(["failover"]),
                self.cluster(root / "failover", p.nodes) as c,
                self.section("failover", c) as out,
            ):
                failover.run(c, p, self.progress, out)
        if self.wanted("rebalance"):
            with (
                self._guard(["rebalance"]),
                self.cluster(root / "rebalance", p.nodes) as c,
                self.section("rebalance", c) as out,
            ):
                out.details["register_per_s"] = asyncio.run(rebalance.register(c, p, self.progress))
                rebalance.run(c, p, self.progress, out)
        if self.wanted("durable"):
            with (
                self._guard(["durable"]),
                self.cluster(
                    root / "durable", p.nodes, worker_modules=(durable_section.WORKER_MODULE,)
                ) as c,
                self.section("durable", c) as out,
            ):
                durable_section.run(c, p, self.progress, out)
        if self.wanted("etcd"):
            with self.section("etcd") as out:
                why = ref_etcd.missing()
                if why:
                    out.skipped = why
                    self.progress.say(f"etcd reference skipped: {why}")
                else:
                    asyncio.run(ref_etcd.run(p, root / "etcd", self.progress, out))

    @contextmanager
    def _guard(self, names: list[str]) -> Iterator[None]:
        """A cluster that fails to start or stop is an error of its sections."""
        try:
            yield
        except Exception as exc:
            for name in names:
                result = self.results.setdefault(
                    name, SectionResult(name=name, started_at=now_iso())
                )
                result.error = result.error or f"{type(exc).__name__}: {exc}"
            self.progress.say(f"cluster for {', '.join(names)} FAILED: {str(exc)[:300]}")

    def add_ratios(self) -> None:
        figures = {f.key: f for r in self.results.values() for f in r.figures}
        for ours, ref, target in RATIOS:
            if ours in figures and ref in figures and figures[ref].value > 0:
                section = self.results[ours.split(".", 1)[0]]
                ratio = Ratio(
                    reference=ref, value=figures[ours].value / figures[ref].value, target=target
                )
                section.figures = [
                    replace(f, ratio=ratio) if f.key == ours else f for f in section.figures
                ]


def run(params: Params, progress: Progress) -> tuple[dict[str, Any], str]:
    """Run every selected section; returns the JSON document and the table."""
    started_at = now_iso()
    started = time.monotonic()
    meta = {
        "started_at": started_at,
        "machine": machine(),
        "params": {**asdict(params), "work_dir": str(params.work_dir or "")},
    }
    root = params.work_dir or Path(tempfile.mkdtemp(prefix="registry-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    runner = Runner(params, progress)
    try:
        runner.run_all(root)
    finally:
        if params.keep:
            progress.say(f"data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    runner.add_ratios()
    ordered = [runner.results[s] for s in params.sections if s in runner.results]
    figures: dict[str, Any] = {f.key: f.to_json() for r in ordered for f in r.figures}
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        **meta,
        "finished_at": now_iso(),
        "wall_s": round(time.monotonic() - started, 3),
        "ok": not any(r.error for r in ordered),
        "figures": figures,
        "targets": {k: v["target"] for k, v in figures.items() if "target" in v},
        "misses": [k for k, v in figures.items() if v.get("verdict") == "miss"],
        "sections": {r.name: r.to_json() for r in ordered},
    }
    return doc, render(meta, ordered)
