"""Test machinery for real node processes under real faults (the partition suite).

- ``netns``: network namespaces on a private bridge, and nftables partitions.
- ``cluster``: node processes inside those namespaces, and a client agent to reach them.
- ``agent``: the client helper process that runs inside the client namespace.
- ``ledger`` / ``ledger_worker``: a worker kind that records every activation in SQLite.
- ``history``: what the test did (faults, pauses, kills, acknowledged writes), stored in
  the same SQLite file.
- ``convergence``: is every name running once, at its owner?
- ``nemesis``: fault kinds, a seeded schedule of them, and their injection.
- ``jepsen`` / ``jepsen_check``: a randomized run (``registry jepsen``) and the checker.
- ``local_cluster``: node processes on loopback, no namespaces and no root (``LocalCluster``,
  used by ``tests/cluster`` and ``registry bench``).
- For users' own tests: ``pytest_plugin`` (the ``registry_cluster`` fixture, installed as
  a ``pytest11`` plugin) and ``worker_harness`` (``WorkerHarness``: a Worker's hooks
  in-process).

Nothing here is imported by the registry itself; all but ``local_cluster``,
``pytest_plugin`` and ``worker_harness`` need root (``ip netns``, ``nft``).
"""
