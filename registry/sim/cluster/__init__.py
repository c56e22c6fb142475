"""The cluster family: registry nodes (``Replica``) with model worker runtimes.

``harness`` (hosts playing the ``ReplicaReady`` contract; ``NodeView`` is their one read
of a replica), ``runtime`` (the model worker hosts), ``workload`` (clients), ``heal``
(the convergence phase and its placement oracle), ``observations`` and ``checkers``
(G1–G5), ``runner`` (``run_cluster_seed``).
"""
