"""Faults, a seeded schedule of them, and the code that injects and heals each one.

Kinds (``KINDS``):

=================== ===================================================================
``split``           majority/minority: the minority (⌊(n−1)/2⌋ nodes) is cut off
``isolate-leader``  the current leader is cut off from every other node
``isolate``         a random member is cut off
``bridge``          A↔B and B↔C work, A↮C (A and C: ⌊(n−1)/2⌋ nodes each, B: the rest)
``one-way``         packets from one node to another are lost, the reverse path works
``flap``            a link between two nodes goes down and up several times
``kill``            ``kill -9`` a node, keep it down a while, restart it (same data dir)
``pause``           ``SIGSTOP`` a node for longer than the lease, then ``SIGCONT``
``rolling-restart`` SIGTERM each node in turn (graceful: drain by handoff), restart it
``full-restart``    SIGTERM every node at once, then start them all again
``member-change``   a new node (new id, in the ``spare`` namespace) is added as a learner
                    and promoted to voter while a minority is cut off; after that heals
                    it is removed (its names move away by handoff) while another
                    minority is cut off, and stopped. Each cut is recorded as a
                    ``split`` too, so the failover and minority checks cover it.
=================== ===================================================================

``schedule(seed, ...)`` yields ``Plan`` values from ``random.Random(seed)``: the kinds,
targets (as positions among the sorted node ids), hold times and flap timings replay
exactly from the seed. Only ``isolate-leader``'s target depends on the run (whoever leads).

Hold times are derived from the timing preset: a fault that takes a node away lasts past
``down_after`` so that its names fail over; short pauses (between the lease and
``down_after``, less two member heartbeats) make a node fence itself without a failover,
long ones outlast the failover. A hold is the fault's duration, not a wait for a condition.

``Nemesis.run(plan)`` injects, holds, heals and records every step in the ``History``;
the caller then waits for convergence. A split/isolation also probes the cut-off node
(G6): once it has lost its lease, a write must be refused with ``UNAVAILABLE`` and "no
quorum", and ``/status`` must still answer.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from registry.core.timing import Timing
from registry.testing.agent import AgentError
from registry.testing.cluster import NetnsCluster, wait_for
from registry.testing.history import SKIPPED, History
from registry.testing.netns import Drop, cut, one_way

KINDS = (
    "split",
    "isolate-leader",
    "isolate",
    "bridge",
    "one-way",
    "flap",
    "kill",
    "pause",
    "rolling-restart",
    "full-restart",
    "member-change",
)
WEIGHTS = {"rolling-restart": 0.4, "full-restart": 0.3, "member-change": 0.4}
"""Relative frequency (default 1): restarts and membership changes are slow, so they
come less often."""
ADMIN_BOUND_LEASES = 30
"""A membership change through the Admin service must succeed within this many leases
(at least seconds) — catching up a new learner included."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    kind: str
    picks: tuple[int, ...]
    """Positions (into the sorted node ids) of the nodes the fault is about."""
    hold: float
    """Seconds the fault lasts (for ``flap``: unused, see ``flaps``)."""
    flaps: tuple[tuple[float, float], ...] = ()
    """``flap``: (down, up) seconds for each cut of the link."""


def parse_kinds(spec: str) -> tuple[str, ...]:
    """``all`` or a comma-separated subset of ``KINDS``; raises ``ValueError``."""
    if spec == "all":
        return KINDS
    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown nemesis {unknown or spec!r}; choose 'all' or from {KINDS}")
    return kinds


def down_after(timing: Timing) -> float:
    """When the leader may declare a silent member down (what the core uses, in s)."""
    return (timing.membership().down_after_tick + 1) * timing.tick


def schedule(seed: int, kinds: Sequence[str], size: int, timing: Timing) -> Iterator[Plan]:
    rng = random.Random(seed)
    lease, down = timing.lease, down_after(timing)
    weights = [WEIGHTS.get(k, 1.0) for k in kinds]
    minority = (size - 1) // 2
    while True:
        kind = rng.choices(list(kinds), weights)[0]
        order = tuple(rng.sample(range(size), size))
        hold = down + rng.uniform(0.2, 1.2) * max(1.0, lease)
        flaps: tuple[tuple[float, float], ...] = ()
        if kind == "split":
            picks = order[:minority]
        elif kind == "pause":
            picks = order[:1]
            if rng.random() < 0.5:  # fences itself on resume, nobody takes over
                # The leader counts down_after from the last heartbeat before the pause
                # (up to one heartbeat earlier): stay two heartbeats short of it, or the
                # MemberDown races the SIGCONT.
                short = down - 2 * timing.member_heartbeat
                hold = rng.uniform(1.2 * lease, max(1.25 * lease, short))
        elif kind == "member-change":  # the first cut, then the second
            picks = order[: 2 * minority]
        elif kind in ("isolate", "kill", "isolate-leader"):
            picks = order[:1]
        elif kind == "one-way":
            picks = order[:2]
        elif kind == "flap":
            picks = order[:2]
            up = (0.05, max(0.2, lease))
            flaps = tuple(
                (rng.uniform(0.05, 1.5 * lease), rng.uniform(*up)) for _ in range(rng.randint(3, 6))
            )
        else:  # bridge (A = first, C = last), rolling-restart (in this order), full-restart
            picks = order
        yield Plan(kind=kind, picks=picks, hold=hold, flaps=flaps)


class Nemesis:
    def __init__(self, cluster: NetnsCluster, history: History, timing: Timing) -> None:
        self.cluster = cluster
        self.history = history
        self.timing = timing
        self.ids = sorted(cluster.ids)
        self.injected: dict[str, int] = {}
        self.added = 0
        """Nodes the membership nemesis has added so far (their ids: m1, m2, …)."""

    def record(self, kind: str, detail: str, targets: Sequence[str], t: float, n: int = 1) -> int:
        self.injected[kind] = self.injected.get(kind, 0) + n
        return self.history.fault(kind, detail, targets, t, n)

    def run(self, plan: Plan) -> tuple[list[int], float]:
        """Inject ``plan``, hold it, heal; returns the fault ids and the heal time."""
        nodes = [self.ids[i] for i in plan.picks]
        kind = plan.kind
        if kind in ("split", "isolate", "isolate-leader"):
            if kind == "isolate-leader":
                nodes = [self._leader() or nodes[0]]
            rest = [n for n in self.ids if n not in nodes]
            return self._partition(kind, cut(nodes, rest), nodes, plan.hold, probe=nodes[0])
        if kind == "bridge":
            k = (len(nodes) - 1) // 2
            a, b, c = nodes[:k], nodes[k:-k], nodes[-k:]
            detail = f"A={a} B={b} C={c}"
            return self._partition(kind, cut(a, c), [], plan.hold, detail=detail)
        if kind == "one-way":
            src, dst = nodes
            return self._partition(kind, one_way(src, dst), [], plan.hold, detail=f"{src}->{dst}")
        if kind == "flap":
            return self._flap(nodes[0], nodes[1], plan.flaps)
        if kind == "kill":
            return self._kill(nodes[0], plan.hold)
        if kind == "pause":
            return self._pause(nodes[0], plan.hold)
        if kind == "rolling-restart":
            return self._rolling(nodes)
        if kind == "full-restart":
            return self._full_restart()
        if kind == "member-change":
            return self._member_change(nodes, plan.hold)
        raise ValueError(f"unknown fault kind {kind!r}")

    # -- partitions --------------------------------------------------------------------

    def _partition(
        self,
        kind: str,
        drops: set[Drop],
        targets: list[str],
        hold: float,
        *,
        probe: str | None = None,
        detail: str = "",
        during: Callable[[], None] | None = None,
    ) -> tuple[list[int], float]:
        """Cut ``drops`` for ``hold`` seconds (or until ``during``, run once the probe is
        done, returns, if that is later), then heal."""
        t0 = time.monotonic()
        self.cluster.net.set_drops(drops)
        fid = self.record(kind, detail or json.dumps(sorted(drops)), targets, t0)
        try:
            if probe is not None:
                self.probe_minority(fid, probe, t0 + hold)
            if during is not None:
                during()
            _sleep_until(t0 + hold)
        except BaseException:
            self.cluster.net.heal()
            raise
        self.cluster.net.heal()
        t1 = time.monotonic()
        self.history.healed(fid, t1)
        return [fid], t1

    def probe_minority(self, fid: int, node: str, until: float) -> None:
        """G6: wait (until ``until`` at most) for ``node`` to lose its lease, then try a
        write there and read its ``/status``."""

        def lost() -> bool:
            s = self.cluster.status(node)
            return not s["quorum"] and not s["leader"]

        try:
            wait_for(f"{node} to lose quorum", lost, max(0.1, until - time.monotonic() - 0.3))
        except AssertionError:
            self.history.minority(node, SKIPPED, "still had a leader or lease", False)
            return
        name = f"g6-{fid}-{node}"
        t_sent = time.monotonic()
        try:
            self.cluster.agent.request(
                "register_many", node, timeout=2.0, specs=[{"name": name, "kind": "ledger"}]
            )
            code, message = "OK", "a node without quorum acknowledged a write"
            self.history.acked([name], t_sent, time.monotonic())
        except AgentError as exc:
            code, message = exc.code, exc.message
        try:
            status, body = self.cluster.http_get(node, "/status")
            status_ok = status == 200 and isinstance(json.loads(body), dict)
        except (AgentError, ValueError):
            status_ok = False
        self.history.minority(node, code, message, status_ok)

    def _flap(
        self, a: str, b: str, flaps: Sequence[tuple[float, float]]
    ) -> tuple[list[int], float]:
        t0 = time.monotonic()
        fid = self.record("flap", f"{a}<->{b} x{len(flaps)}", [], t0, len(flaps))
        for down, up in flaps:
            self.cluster.net.set_drops(cut([a], [b]))
            _sleep_until(time.monotonic() + down)
            self.cluster.net.heal()
            _sleep_until(time.monotonic() + up)
        t1 = time.monotonic()
        self.history.healed(fid, t1)
        return [fid], t1

    # -- membership --------------------------------------------------------------------

    def _member_change(self, picks: Sequence[str], hold: float) -> tuple[list[int], float]:
        half = len(picks) // 2
        first, second = list(picks[:half]), list(picks[half:])
        self.added += 1
        new = f"m{self.added}"
        t0 = time.monotonic()
        detail = f"add {new} and promote it while {first} are cut off; remove it while {second} are"
        fid = self.record("member-change", detail, [new], t0)
        peer_address = self.cluster.add_member(new)
        self.cluster.start_node(new)
        spare = self.cluster.host[new]

        def add_and_promote() -> None:
            address = self.cluster.grpc[new]
            self.admin(first, "member_add", member=new, address=address, peer_address=peer_address)
            self.admin(first, "member_promote", member=new)

        def remove() -> None:
            self.admin(second, "member_remove", member=new)

        rest = [n for n in self.ids if n not in first]
        added, _ = self._partition(
            "split", cut(first, [*rest, spare]), first, hold, probe=first[0], during=add_and_promote
        )
        rest = [n for n in self.ids if n not in second]
        removed, _ = self._partition(
            "split", cut(second, [*rest, spare]), second, hold, probe=second[0], during=remove
        )
        self.cluster.retire_member(new)
        t1 = time.monotonic()
        self.history.healed(fid, t1)
        return [fid, *added, *removed], t1

    def admin(self, cut_off: Sequence[str], op: str, **fields: object) -> None:
        """Run an Admin ``op`` through a node on the majority side, retrying (bounded)
        while it cannot be done yet: no leader, a learner still catching up, an earlier
        change not yet committed. Done also when an earlier try's answer was lost but the
        change happened (ALREADY_EXISTS; a removal answers OK again)."""
        via = [n for n in self.ids if n not in cut_off]
        attempts = iter(range(1_000_000))

        def attempt() -> bool:
            leader = self._leader()
            node = leader if leader in via else via[next(attempts) % len(via)]
            try:
                self.cluster.agent.request(op, node, timeout=10.0, **fields)
            except AgentError as exc:
                if exc.code != "ALREADY_EXISTS":
                    raise  # not yet: wait_for retries until its deadline
            return True

        bound = ADMIN_BOUND_LEASES * max(1.0, self.timing.lease)
        wait_for(f"{op} {fields} through {via}", attempt, bound, interval=0.1)

    # -- processes ---------------------------------------------------------------------

    def _leader(self) -> str | None:
        for n in self.cluster.running_ids():
            try:
                leader = self.cluster.status(n)["leader"]
            except AgentError:
                continue
            if leader:
                return str(leader)
        return None

    def _kill(self, node: str, hold: float) -> tuple[list[int], float]:
        t0 = time.monotonic()
        pid = self.cluster.kill(node)
        self.history.kill(pid, time.monotonic())  # reaped: nothing of it runs after this
        fid = self.record("kill", f"kill -9 {node} (pid {pid})", [node], t0)
        _sleep_until(t0 + hold)
        self.cluster.start_node(node)
        t1 = time.monotonic()
        self.history.healed(fid, t1)
        return [fid], t1

    def _pause(self, node: str, hold: float) -> tuple[list[int], float]:
        t0 = time.monotonic()
        pid = self.cluster.pause(node)
        pause = self.history.paused(pid, t0)
        fid = self.record("pause", f"SIGSTOP {node} (pid {pid}) for {hold:.2f} s", [node], t0)
        _sleep_until(t0 + hold)
        self.cluster.resume(node)
        t1 = time.monotonic()
        self.history.resumed(pause, t1)
        self.history.healed(fid, t1)
        return [fid], t1

    def _rolling(self, order: Sequence[str]) -> tuple[list[int], float]:
        fids = []
        t1 = time.monotonic()
        for node in order:
            t0 = time.monotonic()
            fid = self.record("rolling-restart", f"SIGTERM {node}, restart", [], t0)
            was_running = self.cluster.nodes[node].running()
            pid = self.cluster.nodes[node].pid if was_running else 0
            self.cluster.terminate(node)
            if was_running:
                self.history.kill(pid, time.monotonic())  # exited and reaped by now
            self.cluster.start_node(node)
            t1 = time.monotonic()
            self.history.healed(fid, t1)
            fids.append(fid)
            # Each node back in the view before the next one stops; if it is not, the
            # convergence wait after the plan records the failure.
            with contextlib.suppress(AssertionError):
                self.cluster.wait_ready(30.0 * max(1.0, self.timing.lease))
        return fids, t1

    def _full_restart(self) -> tuple[list[int], float]:
        t0 = time.monotonic()
        fid = self.record("full-restart", "SIGTERM all, start all", [], t0)
        pids = [node.pid for node in self.cluster.nodes.values() if node.running()]
        self.cluster.terminate_all()
        # Every one exited and was reaped by now. A worker that kept answering calls
        # until its node exited (nothing could commit its stop: every node was going)
        # was live until then, not only until its last ledger write.
        t_exit = time.monotonic()
        for pid in pids:
            self.history.kill(pid, t_exit)
        for n in self.ids:
            self.cluster.start_node(n)
        t1 = time.monotonic()
        self.history.healed(fid, t1)
        return [fid], t1


def _sleep_until(deadline: float) -> None:
    """Let a fault last until ``deadline`` (a duration, not a wait for a condition)."""
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
