"""The checkpoint checker (durable workers, ``registry.core.durable``), on a cluster history.

Rules it judges, from observations alone:

1. **Order** (G2 for state): per name, the checkpoints the state machine kept, in log
   order, never go back to an older token — a checkpoint from a superseded activation
   applied after one of its successor's would overwrite newer state with older. (An
   accepted checkpoint whose ``seq`` is not above the kept one of its token is a resend
   and changes nothing: ``registry.core.durable`` rule 3.)
2. **Restore**: a FAILOVER or RESTART start of ``(name, token T)`` resumes the last
   checkpoint committed before its assignment — the kept checkpoint of that name with the
   highest index below ``T`` (a token is the index of the entry that assigned it) and
   above the name's last registration (an unregister drops checkpoints; registering
   again starts empty). ``restored_from`` must be its index and the count its count;
   with no such checkpoint, ``restored_from`` is 0 and the count 0.

Every replica applies the same entries, so each checkpoint is observed once, at the
first replica that applies it; the starting node applied every entry below ``T`` before
it started, so those are all observed before the start.
"""

from __future__ import annotations

from bisect import bisect_left, insort

from registry.sim.checks.base import Checker
from registry.sim.cluster.observations import (
    ActivationStarted,
    CheckpointApplied,
    ClusterObservation,
    RegisterApplied,
)

RESTORING = ("failover", "restart")


class Checkpoints(Checker[ClusterObservation]):
    name = "checkpoints"
    handles = (CheckpointApplied, RegisterApplied, ActivationStarted)

    def __init__(self) -> None:
        super().__init__()
        self.kept: dict[str, list[tuple[int, int, int, int]]] = {}
        """name → (index, token, seq, count) of the checkpoints kept, sorted by index."""
        self.registered_at: dict[str, list[int]] = {}
        """name → indices of its registrations, ascending."""
        self.applied = 0
        """Checkpoints kept (accepted, and not a resend of one kept)."""
        self.refused = 0
        self.restores = 0
        """FAILOVER/RESTART starts that resumed a checkpoint (judged by rule 2)."""

    def feed(self, obs: ClusterObservation) -> None:
        if isinstance(obs, CheckpointApplied):
            self._applied(obs)
        elif isinstance(obs, RegisterApplied):
            for name in obs.names:
                insort(self.registered_at.setdefault(name, []), obs.index)
        else:
            assert isinstance(obs, ActivationStarted)
            if obs.reason in RESTORING:
                self._restored(obs)

    def _applied(self, obs: CheckpointApplied) -> None:
        if not obs.accepted:
            self.refused += 1
            return
        kept = self.kept.setdefault(obs.name, [])
        at = bisect_left(kept, (obs.index,))
        before = kept[at - 1] if at > 0 else None
        after = kept[at] if at < len(kept) else None
        if before is not None and before[1] == obs.token and before[2] >= obs.seq:
            return  # a resend, or reordered within its activation: not kept (rule 3)
        self.applied += 1
        if before is not None and before[1] > obs.token:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r}: a checkpoint of token {obs.token} (count {obs.count}) was "
                f"applied at index {obs.index}, after one of the newer token {before[1]} at "
                f"index {before[0]}: stale state overwrote its successor's",
            )
        elif after is not None and after[1] < obs.token:
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r}: a checkpoint of the older token {after[1]} is kept at index "
                f"{after[0]}, after token {obs.token}'s at index {obs.index}",
            )
        kept.insert(at, (obs.index, obs.token, obs.seq, obs.count))

    def _restored(self, obs: ActivationStarted) -> None:
        regs = self.registered_at.get(obs.name, [])
        at = bisect_left(regs, obs.token)
        registered = regs[at - 1] if at > 0 else 0
        kept = self.kept.get(obs.name, [])
        below = bisect_left(kept, (obs.token,))
        latest = kept[below - 1] if below > 0 and kept[below - 1][0] > registered else None
        if latest is None:
            if obs.restored_from or obs.initial:
                self.violation(
                    obs.at_us,
                    obs.node,
                    f"{obs.name!r} started ({obs.reason}, token {obs.token}) at count "
                    f"{obs.initial}, restored from index {obs.restored_from}, but no "
                    f"checkpoint was committed since its registration at index {registered}",
                )
            return
        index, token, _, count = latest
        if (obs.restored_from, obs.initial) != (index, count):
            self.violation(
                obs.at_us,
                obs.node,
                f"{obs.name!r} started ({obs.reason}, token {obs.token}) at count "
                f"{obs.initial}, restored from index {obs.restored_from}; the last checkpoint "
                f"committed before it is index {index} (token {token}, count {count})",
            )
            return
        self.restores += 1
