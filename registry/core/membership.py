"""Member heartbeats, leases, self-fencing, and the leader's failure detector.

Rules (DESIGN §3, with the drift arithmetic in ``timing``):

1. Every member (voters included) heartbeats the Raft leader every ``heartbeat_tick``,
   and at once when it holds a lease its last heartbeat did not report (the leader gives
   it names only then, rule 6; waiting for the next beat delayed every rejoin by up to
   ``heartbeat_tick``). Each heartbeat carries a sequence number; the member remembers
   its *send* tick.
2. The leader acknowledges a heartbeat only while its own Raft leader lease holds and an
   entry of its term is committed, so an acknowledgement always comes from the one leader
   that can commit, and no entry missing from its log (a predecessor's ``MemberDown``)
   can commit later. A heartbeat that arrives while that does not hold is kept (each
   member's latest) and acknowledged as soon as it holds again, if it is younger than a
   lease (``Replica._answer_unacked``): the acknowledgement is still given under the
   lease, and the lease it grants still counts from the heartbeat's send, so lateness
   only shortens it. Dropping them cost every member its lease in any Raft-lease gap
   longer than its lease's slack (issue 13's 100k churn).
3. An acknowledgement of heartbeat *s* extends the member's lease to
   ``sent_tick(s) + lease_tick`` on the member's clock — but only once the member has
   applied the log up to ``MemberAck.index``: the last ``MemberDown`` of that member in
   the leader's log at the time of the acknowledgement (``Replica._ack_index``; the
   leader's last index while its log holds an unapplied entry it did not append itself
   in this term). A member runs workers only while its lease holds.
   Without that condition a member whose log lags (say, just back from a partition)
   could use a fresh lease with a stale view, and start names that a ``MemberDown`` it
   has not applied yet already moved elsewhere. A ``MemberDown`` of the member is the
   only entry that takes its names without its part (a handoff or an unregister waits
   for its ``Released``; a re-fence is its own new incarnation), and none can commit
   later that is not in the leader's log now (rule 2); so the rest of the log may lag.
   Asking for the leader's whole log instead cost a member its lease whenever writes
   kept coming faster than a loaded member applied them: on 2 cores, 100k names moving
   in issue 13's join and heal, every member's acknowledgements waited and fenced.
4. When a held lease runs out, the member **fences**: it stops every worker and takes a
   new incarnation, so that anything it runs afterwards gets new fencing tokens. It sends
   no heartbeat (``Replica``) until the runtime reports each of those workers ended: its
   new incarnation, once up, would move the names at once (rule 6).
5. The leader declares a member down (proposes ``MemberDown``) once it has not heard from
   it for ``down_after_tick`` of its own ticks — counted from when it became leader at
   the earliest, since a new leader cannot know what its predecessor acknowledged.
   One exception, the *previous leader*: a leader grants itself a lease only until its
   Raft leader lease ends plus ``leader_extra_tick`` (and, once it starts a leadership
   transfer, from then on), so when a node wins term *T* having heard from the leader
   of *T − 1* (no term, so no other leader, in between), that leader's self-granted
   lease ended by ``leader_extra_tick`` after the win, and it is declared down
   ``previous_leader_down_tick`` after the win. A lease some earlier leader granted it
   began before it was elected, so ``down_after_tick`` after the new leader first heard
   from it as leader covers that one. And one case with more knowledge: a leader of *T*
   that was itself the leader of *T − 1* keeps what it heard in *T − 1* (and when that
   term began). Between the two terms nobody acknowledged a heartbeat: no leader led, it
   did not while it did not lead, and leaders before *T − 1* stopped before *T − 1*
   began; so its old counts still bound every lease. (A step-down and re-election, say
   when a voter returned slowly while another was cut off, otherwise added a whole
   ``down_after`` to that failover: 3.5 s instead of 2 in the partition suite.)
   Both shortcuts hold just the same when the terms between had no leader with a Raft
   lease (only such a leader acknowledges heartbeats, rule 2): the votes that elected
   us tell (``RawNode.prior_leader_term``, raft rule 9). A split vote after a leader's
   loss — two followers timing out in the same tick — otherwise cost its names a whole
   ``down_after`` from the second round's win: 3.4 s in the partition suite.
   And the *handover*: a leader that gives up leadership on purpose (a transfer, or the
   step-down after removing itself, raft rule 6) has stopped acknowledging heartbeats
   before it sends ``TIMEOUT_NOW`` (a transfer revokes its Raft lease; a follower
   acknowledges nothing), and the message carries, per member, how many ticks its
   ``last_heard`` lies back and whether that is its own acknowledgement
   (``LeaderMonitor.handover``). If the receiver then leads the very next term, no lease
   was granted in between, so counting ``down_after_tick`` from its receipt tick minus
   that count bounds every lease the member got before our term: its ticks and ours each
   run at a bounded rate, so the sum of the two spans is as safe as one leader's count,
   and the message's delay only makes it later. The count it did not acknowledge itself
   is inherited, often just its own win; but if the receiver led the last leased term
   before the sender's (the handover names that leader, ``prior``), the receiver's own
   counts from then still bound every lease granted before the sender's term, and only
   the sender's acknowledgements come on top (``LeaderMonitor._merge``; the counts must
   be from a term it led since it started). Without the handover a member cut off as the
   leader stepped down (its quorum broke as the split began), while a new member won the
   next term and handed leadership back as it was removed, waited a whole ``down_after``
   from the last win: 3.2–3.45 s in the partition suite (a membership change during a
   split).
6. A heartbeat from an unknown member, a new incarnation, or changed roles/address
   makes the leader propose ``MemberUp`` — once the member reports holding a lease, so
   names are only given to a member that can run them. An incarnation that was declared
   down comes back up only on a heartbeat sent after the member applied that
   ``MemberDown``: heartbeats queued during a partition arrive first after the heal,
   claiming a lease the member has since lost (it fenced and took a new incarnation);
   bringing the old incarnation up gave it names it could not run, and the next
   ``MemberUp`` failed them over, dropping the state a takeover had just handed over.
7. Acknowledgements can be lost one way only. A member that keeps reporting "no lease"
   for ``down_after_tick`` while it is up in the view is not getting them: the leader
   stops acknowledging it, so ``down_after_tick`` after the last acknowledgement it is
   declared down like any silent member, and its names run elsewhere (G4). Once it is
   down, acknowledgements resume, and if they get through, rule 6 brings it back.
8. Rule 4 must hold whatever the worker code does, so workers do not run in the process
   that keeps this lease (``registry.node.hosts``). The member's control process, which
   runs no user code, grants each worker host a sub-lease ``until ≤ L`` (``L``: this
   lease's end); a host serves nothing past ``until``. At ``L + fence_grace`` the
   control process SIGKILLs every host still running an activation it had at ``L``, and
   a host's own watchdog thread exits once ``until + fence_grace`` has passed without
   renewal (the control process may be paused). Both read one machine's
   ``CLOCK_MONOTONIC``, the clock ``L`` is measured on, so no drift enters between
   them: every activation of the member has ended by ``L + fence_grace`` on the
   member's clock, which is exactly what ``down_after`` (``timing``) already assumes —
   it stays safe unchanged; only the timers' scheduling latency (milliseconds: the
   control loop runs no user code, the watchdog checks every 20 ms) comes out of
   ``margin``. The one gap: a control process that is paused while a host's worker
   holds the GIL in C code (neither the SIGKILL nor the watchdog can run).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from registry.core.commands import Command, MemberDown, MemberUp
from registry.core.messages import Handover, MemberSilence, NodeId
from registry.core.state import RegistryState
from registry.core.timing import MembershipConfig


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberHeartbeat:
    src: NodeId
    dst: NodeId
    seq: int
    incarnation: int
    address: str = ""
    roles: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    has_lease: bool = False
    """Whether the member holds a lease as it sends this (rule 7)."""
    draining: bool = False
    """The member is shutting down and wants its names moved away (graceful stop)."""
    applied: int = 0
    """The member's applied log index as it sends this (rule 6: stale heartbeats)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberAck:
    src: NodeId
    dst: NodeId
    seq: int
    incarnation: int
    index: int = 0
    """The lease counts only once the member has applied this far: the last
    ``MemberDown`` of it in the leader's log when it acknowledged (rule 3)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseLapse:
    """Why a held lease ran out, in the member's ticks before the lapse: an operator's
    first question about a fence. No acknowledgement at all points at the leader (its
    Raft lease, rule 2) or the network; acknowledgements that waited for the log point at
    this member applying too slowly (rule 3); a stale last heartbeat at this member's
    own loop."""

    leader: NodeId
    """Where heartbeats went ("" when no leader was known)."""
    granted_by_heartbeat_sent: int
    """How long before the lapse the heartbeat behind the lapsed lease was sent."""
    last_heartbeat: int
    """Since the last heartbeat was sent (-1: none this incarnation)."""
    last_ack: int
    """Since the last acknowledgement arrived (-1: none this incarnation)."""
    acks_held: int
    """Acknowledgements that arrived since the lease was last extended but extended
    nothing, because the log was not yet applied to their index (rule 3)."""
    held_for_index: int
    """The highest log index one of them waited for (0: none)."""
    applied: int


class MemberAgent:
    """The member side: heartbeats out, acknowledgements in, lease and fencing."""

    def __init__(
        self,
        cfg: MembershipConfig,
        node: NodeId,
        incarnation: int,
        *,
        address: str = "",
        roles: tuple[str, ...] = (),
        kinds: tuple[str, ...] = (),
    ) -> None:
        self.cfg = cfg
        self.node = node
        self.incarnation = incarnation
        self.address = address
        self.roles = roles
        self.kinds = kinds
        self.ticks = 0
        self._seq = 0
        self._sent: dict[int, int] = {}
        self._lease_until = 0
        """Granted by other leaders' acknowledgements."""
        self._self_until = 0
        """Granted by this node to itself while it led (rule 5: capped by its Raft lease)."""
        self._applied = 0
        self._pending: list[tuple[int, int]] = []
        """Acknowledged leases ``(index, until)`` waiting for the log to be applied."""
        self._since_heartbeat = cfg.heartbeat_tick  # heartbeat at the first chance
        self._held = False
        self._reported_lease = False
        """Whether the last heartbeat sent said that this member held a lease."""
        self.draining = False
        self._leader: NodeId = ""
        self._last_ack_tick: int | None = None
        self._acks_held = 0
        self._held_for_index = 0
        self.lapse: LeaseLapse | None = None
        """Set with each fence (``check_fence`` returning True): why it came."""

    def tick(self) -> None:
        self.ticks += 1
        self._since_heartbeat += 1

    def heartbeat(self, leader: NodeId) -> MemberHeartbeat | None:
        """The heartbeat due now, if any (none while no leader is known). A new leader
        is asked at once: leases run out during leader changes, and waiting a heartbeat
        interval for the first ack would waste part of what is left."""
        if not leader:
            self._leader = ""  # for ``LeaseLapse``; and a leader found again hears at once
            return None
        if leader != self._leader:
            self._leader = leader
        elif self._since_heartbeat < self.cfg.heartbeat_tick and not self._lease_is_news():
            return None
        self._since_heartbeat = 0
        self._seq += 1
        self._sent[self._seq] = self.ticks
        horizon = self.ticks - self.cfg.lease_tick
        for seq in [s for s, t in self._sent.items() if t < horizon]:
            del self._sent[seq]  # too old to extend the lease anyway
        self._reported_lease = self.has_lease()
        return MemberHeartbeat(
            src=self.node,
            dst=leader,
            seq=self._seq,
            incarnation=self.incarnation,
            address=self.address,
            roles=self.roles,
            kinds=self.kinds,
            has_lease=self._reported_lease,
            draining=self.draining,
            applied=self._applied,
        )

    def _lease_is_news(self) -> bool:
        """A lease the leader has not been told of (rule 1)."""
        return self.has_lease() and not self._reported_lease

    def on_ack(self, ack: MemberAck) -> None:
        if ack.dst != self.node or ack.incarnation != self.incarnation:
            return
        sent = self._sent.get(ack.seq)
        if sent is None:
            return
        self._last_ack_tick = self.ticks
        if ack.index <= self._applied:
            self._extend(sent + self.cfg.lease_tick)
        else:
            self._pending.append((ack.index, sent + self.cfg.lease_tick))
            self._acks_held += 1
            self._held_for_index = max(self._held_for_index, ack.index)

    def on_self_ack(self, ack: MemberAck, cap: int) -> None:
        """The leader acknowledged its own heartbeat: a lease, but never past ``cap``
        (its Raft lease end plus ``leader_extra_tick``; rule 5)."""
        if ack.dst != self.node or ack.incarnation != self.incarnation:
            return
        sent = self._sent.get(ack.seq)
        if sent is not None:
            self._last_ack_tick = self.ticks
            until = min(sent + self.cfg.lease_tick, cap)
            self._pending.append((ack.index, -until))  # negative: self-granted
            if ack.index > self._applied:
                self._acks_held += 1
                self._held_for_index = max(self._held_for_index, ack.index)
            self.applied_to(self._applied)

    def cap_self_lease(self, cap: int) -> None:
        """While leading: the self-granted lease (and any such lease still waiting for the
        log to be applied) ends by ``cap``. A leadership transfer revokes the Raft lease,
        so this brings it to ``leader_extra_tick`` from the transfer's start (rule 5)."""
        self._self_until = min(self._self_until, cap)
        self._pending = [(i, u if u > 0 else -min(-u, cap)) for i, u in self._pending]

    def _extend(self, until: int) -> None:
        # A lease about to lapse (an ack of a heartbeat sent long ago, say while the
        # network was cut) is worth nothing but a fence right after: ignore it.
        if abs(until) - self.ticks < 2 * self.cfg.heartbeat_tick:
            return
        if until < 0:
            self._self_until = max(self._self_until, -until)
        else:
            self._lease_until = max(self._lease_until, until)
        self._acks_held = self._held_for_index = 0

    def applied_to(self, index: int) -> None:
        """The member's state machine has applied the log up to ``index``."""
        self._applied = max(self._applied, index)
        waiting = []
        for needed, until in self._pending:
            if needed <= self._applied:
                self._extend(until)
            elif abs(until) > self.ticks:
                waiting.append((needed, until))
        self._pending = waiting

    def has_lease(self) -> bool:
        return self.ticks < max(self._lease_until, self._self_until)

    def lease_remaining(self) -> int:
        return max(0, max(self._lease_until, self._self_until) - self.ticks)

    def check_fence(self, *, running: bool = True) -> bool:
        """True exactly once each time a held lease runs out while workers ran here
        (rule 4); the incarnation has then been bumped and must be persisted before the
        next heartbeat goes out.

        With nothing running there is nothing to fence, and no token of this incarnation
        was ever used by an activation here, so keeping the incarnation keeps G2. Bumping
        it anyway would fail over names just handed to this member — say after a heal,
        when a brief lease from late acknowledgements lapses — and drop their state."""
        if self.has_lease():
            self._held = True
            return False
        if not self._held:
            return False
        self._held = False
        if not running:
            return False
        self.lapse = self._lapse()
        self.incarnation += 1
        self._sent.clear()
        self._pending.clear()
        self._last_ack_tick = None
        self._acks_held = self._held_for_index = 0
        return True

    def _lapse(self) -> LeaseLapse:
        until = max(self._lease_until, self._self_until)
        last_sent = max(self._sent.values(), default=None)
        acked = self._last_ack_tick
        return LeaseLapse(
            leader=self._leader,
            granted_by_heartbeat_sent=self.ticks - (until - self.cfg.lease_tick),
            last_heartbeat=-1 if last_sent is None else self.ticks - last_sent,
            last_ack=-1 if acked is None else self.ticks - acked,
            acks_held=self._acks_held,
            held_for_index=self._held_for_index,
            applied=self._applied,
        )


@dataclass(frozen=True, slots=True)
class HandedCounts:
    """A handover as its receiver keeps it (rule 5)."""

    sender: NodeId
    term: int
    """The sender's term: the handover counts only for a leader of the next one."""
    prior: NodeId
    bases: Mapping[NodeId, tuple[int, bool]]
    """Per member: our listening tick the sender's count starts from, and whether that
    count is from the sender's own acknowledgement."""


class LeaderMonitor:
    """The leader side: acknowledge heartbeats, and propose MemberUp/MemberDown."""

    def __init__(self, cfg: MembershipConfig) -> None:
        self.cfg = cfg
        self._since = 0
        self._previous: tuple[NodeId, int] | None = None
        self._handed: dict[NodeId, int] = {}
        self._led = False
        """Whether what this holds is from a term we led (since the process started)."""
        self._last_heard: dict[NodeId, int] = {}
        self._latest: dict[NodeId, MemberHeartbeat] = {}
        self._proposed: dict[Command, int] = {}
        self._no_lease_since: dict[NodeId, int] = {}

    def became_leader(
        self,
        now: int,
        previous: tuple[NodeId, int] | None = None,
        handed: HandedCounts | None = None,
        me: NodeId = "",
    ) -> None:
        """``previous``: the leader of the term just before ours, and when we first heard
        from it as leader (rule 5); ``None`` when we do not know that leader. ``handed``:
        that leader's handover, if it sent us one (rule 5); ``me``: our id."""
        handed_from = self._merge(handed, me) if handed is not None else {}
        self._since = now
        self._previous = previous
        self._handed = handed_from
        self._led = True
        self._last_heard.clear()
        self._latest.clear()
        self._proposed.clear()
        self._no_lease_since.clear()

    def reelected(self) -> None:
        """We lead the term right after one we led ourselves: keep what we heard then
        (rule 5); only pending proposals are forgotten (they are proposed again)."""
        self._proposed.clear()

    def on_heartbeat(
        self,
        hb: MemberHeartbeat,
        now: int,
        *,
        lease_holds: bool,
        last_index: int = 0,
        member_up: bool = False,
    ) -> MemberAck | None:
        """Acknowledge ``hb``; ``last_index`` is the index the member must have applied
        (rule 3, ``Replica._ack_index``),
        ``member_up`` whether the view has the sender up (in any incarnation; rule 7)."""
        if not lease_holds:
            return None  # rule 2: only a leader that surely leads may grant leases
        self._latest[hb.src] = hb
        if hb.has_lease:
            self._no_lease_since.pop(hb.src, None)
        else:
            since = self._no_lease_since.setdefault(hb.src, now)
            if member_up and now - since >= self.cfg.down_after_tick:
                return None  # rule 7: our acks do not reach it
        self._last_heard[hb.src] = now
        return MemberAck(
            src=hb.dst, dst=hb.src, seq=hb.seq, incarnation=hb.incarnation, index=last_index
        )

    def leased_applied(self, now: int) -> list[int]:
        """The applied index of every member heard from within ``lease_tick`` whose
        heartbeat says it holds a lease (``registry.core.write_pace`` rule 2)."""
        within = self.cfg.lease_tick
        return [
            hb.applied
            for node, hb in self._latest.items()
            if hb.has_lease and now - self._last_heard.get(node, now - within) < within
        ]

    def last_heard(self, node: NodeId) -> int:
        """The tick from which ``down_after_tick`` bounds every lease ``node`` may hold:
        our last acknowledgement of it, else the earliest of what rule 5 allows."""
        heard = self._last_heard.get(node)
        if heard is not None:
            return heard
        bound = min(self._since, self._handed.get(node, self._since))
        previous = self._previous
        shortcut = self.cfg.previous_leader_down_tick
        if previous is not None and previous[0] == node and shortcut is not None:
            # Counted as heard early enough that "down" comes previous_leader_down_tick
            # after we won, but never sooner than down_after_tick after it began to lead.
            bound = min(
                bound, max(previous[1], self._since - (self.cfg.down_after_tick - shortcut))
            )
        return bound

    def handover(self, now: int, members: Iterable[NodeId], prior: NodeId) -> Handover:
        """For a leadership handover (rule 5): how long, in ticks, we have not heard from
        each of ``members`` and of the members we acknowledged, by ``last_heard``, and
        whether that is our own acknowledgement. ``prior``: the leader of the last leased
        term before ours."""
        cap = self.cfg.down_after_tick  # longer tells no more: the member is due anyway
        silences = tuple(
            MemberSilence(
                node=node,
                ticks=min(cap, max(0, now - self.last_heard(node))),
                acked=node in self._last_heard,
            )
            for node in sorted({*members, *self._last_heard})
        )
        return Handover(prior=prior, members=silences)

    def _merge(self, handed: HandedCounts, me: NodeId) -> dict[NodeId, int]:
        """The bounds a handover gives us (rule 5). If we led the last leased term before
        the sender's, what we held then still bounds every lease granted before its term
        (nobody acknowledged anything in between, and we have not since): only the
        sender's own acknowledgements come on top."""
        ours = self._led and bool(me) and handed.prior == me
        if not ours:
            return {node: base for node, (base, _) in handed.bases.items()}
        merged = {node: self.last_heard(node) for node in self._last_heard}
        for node, (base, acked) in handed.bases.items():
            mine = self.last_heard(node)
            merged[node] = max(mine, base) if acked else mine
        return merged

    def changes(self, state: RegistryState, now: int) -> list[Command]:
        """Membership commands to propose now (each at most once per ``retry_tick``)."""
        due: list[Command] = []
        for member in state.up_members():
            if now - self.last_heard(member.node) >= self.cfg.down_after_tick:
                due.append(MemberDown(node=member.node, incarnation=member.incarnation))
        for node, hb in sorted(self._latest.items()):
            if not hb.has_lease or now - self.last_heard(node) >= self.cfg.down_after_tick:
                continue
            record = state.members.get(node)
            current = record is not None and (
                record.up
                and record.incarnation == hb.incarnation
                and record.address == hb.address
                and record.roles == frozenset(hb.roles)
                and record.kinds == frozenset(hb.kinds)
                and record.draining == (hb.draining or node in state.retired)
            )
            stale = (
                record is not None
                and not record.up
                and record.incarnation == hb.incarnation
                and hb.applied < record.down_index
            )
            if stale:
                continue
            if not current and (record is None or record.incarnation <= hb.incarnation):
                due.append(
                    MemberUp(
                        node=node,
                        incarnation=hb.incarnation,
                        address=hb.address,
                        roles=hb.roles,
                        kinds=hb.kinds,
                        draining=hb.draining or node in state.retired,
                    )
                )
        horizon = now - self.cfg.retry_tick
        self._proposed = {c: t for c, t in self._proposed.items() if t > horizon}
        fresh = [c for c in due if c not in self._proposed]
        for command in fresh:
            self._proposed[command] = now
        return fresh
