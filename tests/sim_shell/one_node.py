"""A single-voter ``Replica`` on default timing, for Ready-loop tests."""

from __future__ import annotations

import random

from registry.core.replica import Replica
from registry.core.timing import Timing


def one_node_replica(timing: Timing, **raft: object) -> Replica:
    """``n1``, the only voter; ``raft``: extra ``RaftConfig`` fields."""
    return Replica(
        timing.raft("n1", voters=frozenset({"n1"}), **raft),
        timing.membership(),
        random.Random(1),
        incarnation=1,
        address="n1:7000",
        roles=(),
        kinds=(),
    )
