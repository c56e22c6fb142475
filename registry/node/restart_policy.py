"""A registration's restart policy from the wire (``registry.v1.NameSpec`` fields 6–8).

No field set means the node's defaults (``None``); any field set makes a policy whose
other fields take the defaults (permanent, 5 crashes per 10 s). A policy that makes no
sense is refused with INVALID_ARGUMENT before it reaches the log.
"""

from __future__ import annotations

import grpc

from registry.core.command_types import RestartPolicy, shared_restart_policy
from registry.node.status import Abort
from registry.v1 import registry_pb2 as pb

_DEFAULT = RestartPolicy()


def restart_from_pb(spec: pb.NameSpec) -> RestartPolicy | None:
    has_max, has_window = spec.HasField("max_restarts"), spec.HasField("restart_window")
    if not (spec.restart or has_max or has_window or spec.lazy or spec.idle_after):
        return None
    policy = shared_restart_policy(
        spec.restart or _DEFAULT.mode,
        spec.max_restarts if has_max else _DEFAULT.max_restarts,
        spec.restart_window if has_window else _DEFAULT.window,
        spec.lazy,
        spec.idle_after,
    )
    problem = policy.problem()
    if problem:
        raise Abort(grpc.StatusCode.INVALID_ARGUMENT, f"{spec.name!r}: {problem}")
    return policy
