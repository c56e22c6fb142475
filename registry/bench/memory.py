"""Memory and disk per name: RSS per registered name per replica, per idle activation,
and log + snapshot bytes per name.

Runs first on a fresh cluster. It registers ``names`` idle ``echo`` workers, all pinned
by a priority list to the first node, so the other nodes only *replicate* them: their
RSS growth per name is the cost of a registered name on a replica, and the first node's
growth minus that is the cost of an idle activation. RSS is ``VmRSS`` from
``/proc/<pid>/status``; Python rarely returns memory, so transient garbage of the
registration itself is included (the figure errs on the high side).

A node is a control process plus worker host processes; RSS is reported for each: the
control process per registered name (replicas) and per name it holds (the first node),
and the hosts per idle activation (the first node's hosts, which run them all).
"""

from __future__ import annotations

import statistics
from functools import partial

from registry.bench.clusters import disk_bytes, host_rss, node_rss, seeds, wait_names
from registry.bench.load import Progress
from registry.bench.params import Params
from registry.bench.results import SectionResult, Target
from registry.bench.writes import Settled, settle
from registry.client import Client, Registration
from registry.testing.local_cluster import LocalCluster

PREFIX = "bench/mem/"
KIND = "echo"
RSS_TARGET_BYTES = 1024.0
WAIT_MIN_S = 300.0
WAIT_PER_NAME_S = 0.01
"""How long the names may take to be held everywhere: 1000 s for 100k names."""


async def run(c: LocalCluster, params: Params, progress: Progress, out: SectionResult) -> None:
    pinned = c.ids[0]
    replicas = [n for n in c.running_ids() if n != pinned]
    rss_before = node_rss(c)
    hosts_before = host_rss(c)
    disk_before = {n: disk_bytes(c.nodes[n].data_dir) for n in c.running_ids()}
    progress.step(f"memory: registering {params.names:,} idle {KIND} names pinned to {pinned}")
    settled = Settled()
    async with Client(seeds(c), cache=False, timeout=120.0) as client:
        for start in range(0, params.names, params.batch):
            batch = [
                Registration(f"{PREFIX}{i}", KIND, priority=pinned)
                for i in range(start, min(start + params.batch, params.names))
            ]
            await settle(partial(client.register_many, batch), settled)
            progress.tick(start + len(batch), params.names, "names")
    wait_names(c, params.names, max(WAIT_MIN_S, params.names * WAIT_PER_NAME_S), progress)
    rss_after = node_rss(c)
    hosts_after = host_rss(c)
    disk_after = {n: disk_bytes(c.nodes[n].data_dir) for n in c.running_ids()}

    n = params.names
    grew = {node: rss_after[node] - rss_before[node] for node in rss_after}
    per_name = statistics.mean(grew[r] / n for r in replicas)
    per_activation = grew[pinned] / n - per_name
    out.add(
        "rss_per_name_per_replica_bytes",
        "RSS per registered name, per replica",
        per_name,
        "B",
        target=Target(op="<=", bound=RSS_TARGET_BYTES),
        note=f"mean over {', '.join(replicas)} (they hold no activation of these names)",
    )
    held = grew[pinned] / n
    per_host_activation = (hosts_after[pinned] - hosts_before[pinned]) / n
    out.add(
        "control_rss_per_held_name_bytes",
        "control-process RSS per name it holds",
        held,
        "B",
        note=f"{pinned}'s control process, which holds every one of these names",
    )
    out.add(
        "host_rss_per_idle_activation_bytes",
        "worker-host RSS per idle activation (echo)",
        per_host_activation,
        "B",
        note=f"{pinned}'s worker hosts, which run every one of these activations",
    )
    out.add(
        "rss_per_idle_activation_bytes",
        "RSS per idle activation (echo), control + hosts",
        per_activation + per_host_activation,
        "B",
        note=f"{pinned}'s control-process growth per name minus a replica's, plus its hosts'",
    )
    log_per_name = statistics.mean(
        (disk_after[x]["log"] - disk_before[x]["log"]) / n for x in disk_after
    )
    snap_per_name = statistics.mean(
        (disk_after[x]["snapshot"] - disk_before[x]["snapshot"]) / n for x in disk_after
    )
    out.add("log_bytes_per_name", "log bytes per name (on disk, per node)", log_per_name, "B")
    out.add(
        "snapshot_bytes_per_name",
        "snapshot bytes per name (on disk, per node)",
        snap_per_name,
        "B",
    )
    out.add(
        "disk_bytes_per_name",
        "log + snapshot bytes per name, per node",
        log_per_name + snap_per_name,
        "B",
        note=f"registered in batches of {params.batch}",
    )
    out.details.update(
        names=n,
        pinned_to=pinned,
        writes=settled.to_json(),
        rss_before_bytes=rss_before,
        rss_after_bytes=rss_after,
        host_rss_before_bytes=hosts_before,
        host_rss_after_bytes=hosts_after,
        disk_before_bytes=disk_before,
        disk_after_bytes=disk_after,
    )
