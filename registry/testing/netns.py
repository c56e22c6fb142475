"""Network namespaces on a private bridge, and partitions made of nftables ``drop`` rules.

Design
------
Every host (each node, plus one ``client`` host) gets its own network namespace with one
interface, ``eth0``, addressed ``10.77.0.(10+i)/24``. The other end of each veth pair is a
port of the bridge ``br0``, which lives in a namespace of its own. Nothing is created in
the root namespace: the veth pairs are made inside the bridge namespace with their peer
sent straight into the host namespace, the bridge has no address at all, and no namespace
has a default route (only the connected /24). A packet can therefore only ever travel
between the namespaces of one ``Network``; 10.77.0.0/24 exists nowhere else.

The test process stays in the root namespace. It reaches the nodes through a *client
agent*: a helper process started inside the ``client`` namespace with ``ip netns exec``,
which makes the gRPC and HTTP requests and speaks JSON lines on its stdin/stdout (see
``registry.testing.agent``). That is simpler and safer than switching namespaces inside
the test process (``setns`` applies per thread, and gRPC's threads would not follow).

A partition is a set of blocked *directed* host pairs ``(src, dst)``. Each host's
namespace holds one nftables table, ``inet qrp``, whose ``output`` chain drops packets to
the destinations it may not reach and whose ``input`` chain drops packets from the sources
that may not reach it. Dropping is silent (no RST, no ICMP), as a real network loses
packets; established TCP connections stall rather than fail. A table is replaced
atomically (one ``nft -f`` transaction per host) on every change. Symmetric cuts, one-way
drops and bridges (A↔B, B↔C, A↮C) are all sets of directed pairs.

Names: every namespace is called ``qrp<pid>x<n>-<host>`` (``pid`` of the creating
process), so ``cleanup_leftovers()`` can remove what a dead test process left behind
without touching a live one's. ``down()`` removes everything and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

PREFIX = "qrp"
SUBNET = "10.77.0"
"""The /24 used inside the namespaces (and nowhere else)."""
CMD_TIMEOUT_S = 10.0
_LEFTOVER = re.compile(rf"^{PREFIX}(\d+)x\d+-")
_counter = itertools.count(1)

Drop = tuple[str, str]
"""A blocked direction: packets from host ``src`` to host ``dst`` are dropped."""


class NetnsError(RuntimeError):
    """An ``ip``/``nft`` command failed; the message carries its stderr."""


def missing_requirements() -> str | None:
    """Why the partition machinery cannot run here (or ``None`` when it can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is missing (apt-get install iproute2 nftables)"
    return None


def run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    """Run one command with a deadline; raise ``NetnsError`` with its stderr on failure."""
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=CMD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise NetnsError(f"{' '.join(argv)} timed out after {CMD_TIMEOUT_S:g} s") from exc
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def list_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_namespace(ns: str) -> None:
    """Kill every process still inside ``ns``, then delete it (its links go with it)."""
    for line in run(["ip", "netns", "pids", ns], check=False).split():
        if line.isdigit():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(line), 9)
    run(["ip", "netns", "delete", ns], check=False)


def cleanup_leftovers() -> list[str]:
    """Delete namespaces of ours whose creating process is gone; return their names."""
    removed = []
    for ns in list_namespaces():
        match = _LEFTOVER.match(ns)
        if match and not _pid_alive(int(match.group(1))):
            delete_namespace(ns)
            removed.append(ns)
    return removed


def ruleset(my_addr: str, drops: Iterable[Drop], addr: dict[str, str]) -> str:
    """The ``nft -f`` script that makes host ``my_addr``'s table match ``drops``."""
    sources = sorted(addr[s] for s, d in drops if addr[d] == my_addr)
    targets = sorted(addr[d] for s, d in drops if addr[s] == my_addr)
    rule_in = f"ip saddr {{ {', '.join(sources)} }} drop;" if sources else ""
    rule_out = f"ip daddr {{ {', '.join(targets)} }} drop;" if targets else ""
    return (
        "table inet qrp\n"
        "delete table inet qrp\n"
        "table inet qrp {\n"
        f"  chain input {{ type filter hook input priority 0; policy accept; {rule_in} }}\n"
        f"  chain output {{ type filter hook output priority 0; policy accept; {rule_out} }}\n"
        "}\n"
    )


class Network:
    """Hosts in namespaces on one private bridge; see the module docstring."""

    def __init__(self, hosts: Sequence[str]) -> None:
        if len(set(hosts)) != len(hosts) or not hosts or len(hosts) > 200:
            raise ValueError(f"hosts must be 1..200 distinct names (got {list(hosts)})")
        self.tag = f"{PREFIX}{os.getpid()}x{next(_counter)}"
        self.hosts = list(hosts)
        self.ns = {h: f"{self.tag}-{h}" for h in hosts}
        self.bridge_ns = f"{self.tag}-br"
        self.addr = {h: f"{SUBNET}.{10 + i}" for i, h in enumerate(hosts)}
        self.drops: frozenset[Drop] = frozenset()
        self._created: list[str] = []

    # -- lifecycle ---------------------------------------------------------------------

    def up(self) -> None:
        """Create the bridge namespace, every host namespace and its link; on any
        failure, remove what was made and re-raise."""
        try:
            self._add_ns(self.bridge_ns)
            br = ["ip", "-n", self.bridge_ns]
            run([*br, "link", "add", "br0", "type", "bridge"])
            run([*br, "link", "set", "br0", "up"])
            for i, host in enumerate(self.hosts):
                ns = self.ns[host]
                self._add_ns(ns)
                port = f"v{i}"
                run([*br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns])
                run([*br, "link", "set", port, "master", "br0"])
                run([*br, "link", "set", port, "up"])
                run(["ip", "-n", ns, "addr", "add", f"{self.addr[host]}/24", "dev", "eth0"])
                run(["ip", "-n", ns, "link", "set", "eth0", "up"])
                run(["ip", "-n", ns, "link", "set", "lo", "up"])
                self._apply(host)
        except BaseException:
            self.down()
            raise

    def _add_ns(self, ns: str) -> None:
        run(["ip", "netns", "add", ns])
        self._created.append(ns)

    def down(self) -> None:
        """Delete every namespace made here (killing what still runs inside); idempotent."""
        while self._created:
            delete_namespace(self._created.pop())

    def __enter__(self) -> Network:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- use ---------------------------------------------------------------------------

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped to run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.ns[host], *argv]

    def set_drops(self, drops: Iterable[Drop]) -> None:
        """Make the blocked directions exactly ``drops`` (only changed hosts are touched)."""
        new = frozenset((s, d) for s, d in drops if s != d)
        for s, d in new:
            if s not in self.addr or d not in self.addr:
                raise ValueError(f"unknown host in drop {(s, d)}")
        changed = {h for pair in new.symmetric_difference(self.drops) for h in pair}
        self.drops = new
        procs = [
            (
                h,
                subprocess.Popen(
                    self.exec_argv(h, ["nft", "-f", "-"]),
                    stdin=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
            for h in sorted(changed)
        ]
        errors = []
        for host, proc in procs:
            try:
                _, err = proc.communicate(ruleset(self.addr[host], new, self.addr), CMD_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                err = "timed out"
            if proc.returncode != 0:
                errors.append(f"{host}: {err.strip()}")
        if errors:
            raise NetnsError("nft failed: " + "; ".join(errors))

    def _apply(self, host: str) -> None:
        script = ruleset(self.addr[host], self.drops, self.addr)
        run(self.exec_argv(host, ["nft", "-f", "-"]), stdin=script)

    def heal(self) -> None:
        self.set_drops(())

    def rules(self, host: str) -> str:
        """The host's current nftables table, as ``nft list`` prints it (for debugging)."""
        return run(self.exec_argv(host, ["nft", "list", "table", "inet", "qrp"]), check=False)


def cut(a: Iterable[str], b: Iterable[str]) -> set[Drop]:
    """Both directions between every host of ``a`` and every host of ``b``."""
    a, b = list(a), list(b)
    return {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}


def one_way(src: str, dst: str) -> set[Drop]:
    """Packets from ``src`` to ``dst`` are lost; the other direction still works."""
    return {(src, dst)}
