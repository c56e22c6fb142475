"""The Raft family: the Raft core alone (``RawNode``) under the nemesis.

``harness`` (hosts playing the Ready contract on the engine), ``workload`` (clients),
``calm`` (the liveness phase), ``hashchain`` (the replicated app), ``observations`` and
``checkers`` (election safety … liveness), ``runner`` (``run_raft_seed``).
"""
