"""Planted bugs: sim-only switches that break one promise of the shell on purpose.

Why they exist: a checker that never fails proves nothing. Each switch below plants one
bug in the *simulated shell* (the model runtime, the clients' acknowledgements), never in
the core, and tests/sim/test_planted_bugs.py shows that the checker for that guarantee
fails on it. Only ``run_cluster_seed(..., faults=...)`` takes them; nothing in
``registry.node`` or ``registry.core`` reads them, so production cannot switch them on.

===================  =====  ================================================================
switch               G      the bug
===================  =====  ================================================================
``no_kill``          G1     a worker host that ignores stop is never SIGKILLed and has no
                            watchdog: it keeps running after its node lost the lease
``reuse_token``      G2     the runtime hands a worker the token its name last had on this
                            node instead of the activation's own (a stale token cache)
``ack_on_accept``    G3     the client is answered when the leader *accepts* a write, not
                            when it is committed and applied (acknowledged, then lost)
``drop_handoff``     G5     ``begin_handoff`` answers ``Resume(state)``, but the runtime
                            reports the handoff without the state
``failover_delay``   G4     a FAILOVER start waits this long (µs) before the worker runs (a
                            host that takes seconds to spawn)
``stale_checkpoint`` G2     the state machine keeps a checkpoint from an older token (it
                            checks only that the name has a holder): a superseded
                            activation's late checkpoint overwrites its successor's state
``drop_reminders``   G4     a FAILOVER start runs without the reminders its activation
                            carries (a host start that leaves them out): periods missed by
                            the lost holder are never fired
``leak_reminders``   G2     an activation's reminder timers outlive it on its node (the
                            host does not cancel them when the activation stops): a
                            superseded activation fires its successor's periods
===================  =====  ================================================================

``stale_checkpoint`` is the one plant in the core's logic: the harness swaps the class of
its replicas' ``RegistryState`` for ``AcceptsStaleCheckpoints`` (before each ``Ready``,
so a state restored from a snapshot gets it too). ``registry.core`` still never reads the
switch.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.core.commands import Checkpoint
from registry.core.state import OK, RegistryState, Result


@dataclass(frozen=True, slots=True, kw_only=True)
class SimFaults:
    """Which planted bugs are on (default: none)."""

    no_kill: bool = False
    """G1: hosts that ignore stop are never killed; no host watchdog. Default off."""
    reuse_token: bool = False
    """G2: a start reuses the name's previous token on this node. Default off."""
    ack_on_accept: bool = False
    """G3: acknowledge writes when accepted, not when applied. Default off."""
    drop_handoff: bool = False
    """G5: handoffs are reported without the worker's state. Default off."""
    failover_delay_us: int = 0
    """G4: FAILOVER starts are delayed this many true µs. Default 0."""
    stale_checkpoint: bool = False
    """G2: the state machine keeps checkpoints from older tokens. Default off."""
    drop_reminders: bool = False
    """G4: FAILOVER starts lose their activation's reminders. Default off."""
    leak_reminders: bool = False
    """G2: reminder timers are not cancelled when an activation stops. Default off."""

    @property
    def any(self) -> bool:
        return (
            self.no_kill
            or self.reuse_token
            or self.ack_on_accept
            or self.drop_handoff
            or self.failover_delay_us > 0
            or self.stale_checkpoint
            or self.drop_reminders
            or self.leak_reminders
        )


class AcceptsStaleCheckpoints(RegistryState):
    """The ``stale_checkpoint`` plant: a token below the current one is not refused."""

    def _checkpoint(self, index: int, command: Checkpoint) -> Result:
        record = self.registered(command.name)
        if record is None or not record.holder or command.token >= record.token:
            return super()._checkpoint(index, command)
        self.checkpoints.put(index, command.name, command.token, command.seq, command.state)
        return OK


NO_FAULTS = SimFaults()
