"""Does ``registry dev`` fence or re-elect while the CPU is saturated? (issue 18)

Starts ``registry dev`` (3 nodes, the given preset) on ports 17400+/19400+, registers 100
counter names, then runs BURNERS busy Python loops for SECONDS and compares each node's
``registry_fences_total``, ``registry_raft_term`` and ``registry_failovers_total`` before
and after. A measurement, not a test::

    python scripts/dev_under_load.py local 12 60
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

COUNTERS = ("registry_fences_total", "registry_raft_term", "registry_failovers_total")
GRPC = ["127.0.0.1:17400", "127.0.0.1:17401", "127.0.0.1:17402"]
HTTP_PORTS = [19400, 19401, 19402]


def burn(until: float) -> None:
    count = 0
    while time.monotonic() < until:
        count += 1


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    out = {}
    for key in COUNTERS:
        found = re.search(rf"^{key}(?:{{[^}}]*}})? (\S+)$", body, re.M)
        out[key] = float(found.group(1)) if found else float("nan")
    return out


def main(preset: str, burners: int, seconds: float) -> None:
    from registry.client import Registration, SyncClient

    argv = [sys.executable, "-m", "registry.cli", "dev", "--preset", preset]
    argv += ["--base-port", "17400", "--http-base-port", "19400"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if "ready in" in line:
                print(line.strip())
                break
        else:
            raise SystemExit("registry dev exited before it was ready")
        with SyncClient(GRPC) as client:
            client.register_many([Registration(f"busy/{i}", "counter") for i in range(100)])
        before = [metrics(p) for p in HTTP_PORTS]
        until = time.monotonic() + seconds
        procs = [mp.Process(target=burn, args=(until,)) for _ in range(burners)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        after = [metrics(p) for p in HTTP_PORTS]
        print(
            f"preset {preset}: {burners} busy loops for {seconds:g} s, "
            f"load {os.getloadavg()[0]:.1f}"
        )
        for port, b, a in zip(HTTP_PORTS, before, after, strict=True):
            fences = a["registry_fences_total"] - b["registry_fences_total"]
            failovers = a["registry_failovers_total"] - b["registry_failovers_total"]
            print(
                f"  node :{port}: fences +{fences:g}, term {b['registry_raft_term']:g} -> "
                f"{a['registry_raft_term']:g}, failovers +{failovers:g}"
            )
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
