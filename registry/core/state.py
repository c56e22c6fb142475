"""The replicated registry: names, groups, members, the view, and who holds each name.

Theory of operation
-------------------
Every replica applies the same committed commands in the same order, so every replica
computes the same state — including *who may run each name*. Running is decided here, in
the log, never by a node on its own:

- A name has a **holder** ``(node, incarnation)`` and a **token**: the log index of the
  entry that made it the holder (its fencing token, G2). No holder means the name waits.
- **Register** at index *i* assigns the placement owner (see ``placement``) with token *i*.
- **MemberDown** at *i* (committed by the leader only after the member's lease surely
  expired, see ``membership``) takes its names away: they are reassigned with token *i*
  and reason FAILOVER, without state.
- **MemberUp** at *i* changes the view. Names whose owner changed are *not* reassigned
  here: their holder is still running them. It sees the move when it applies the entry,
  runs ``begin_handoff``, stops the worker, and proposes **Released(name, token, state)**.
  When that commits at *j*, the name goes to the current owner with token *j*, reason
  HANDOFF and the state. A MemberUp with a new incarnation means the old process is gone:
  its names are reassigned with reason FAILOVER.
- **Released** with a token other than the current one is stale and changes nothing.

Because a holder only ever changes at an entry that the old holder either proposed after
stopping (handoff) or that is committed after its lease expired (failover), two holders
never run at once (G1), and tokens only grow (G2).

Results are typed (``Result``) so the node can map them to gRPC codes in one place.
"""

from __future__ import annotations

import base64
import enum
import json
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from registry.core.command_types import shared_restart_policy
from registry.core.commands import (
    Checkpoint,
    Command,
    Join,
    Leave,
    MemberAdmit,
    MemberDown,
    MemberRetire,
    MemberUp,
    NameSpec,
    Priority,
    Quit,
    Register,
    Released,
    Releases,
    Remind,
    RestartPolicy,
    Unregister,
)
from registry.core.durable import (
    Checkpoints,
    Reminders,
    StoredCheckpoint,
    StoredReminder,
    reminder_problem,
)
from registry.core.messages import NodeId
from registry.core.placement import Candidate, Placement, could_ever_host

MAX_NAME_BYTES = 255
MAX_REGISTER_BATCH = 10_000


class StartReason(enum.Enum):
    NEW = "new"
    FAILOVER = "failover"
    HANDOFF = "handoff"
    RESTART = "restart"


class Code(enum.Enum):
    """Outcome of applying a command; the node maps these to gRPC status codes."""

    OK = "ok"
    INVALID_ARGUMENT = "invalid_argument"
    ALREADY_EXISTS = "already_exists"
    NOT_FOUND = "not_found"
    FAILED_PRECONDITION = "failed_precondition"
    UNAVAILABLE = "unavailable"
    """Not possible *yet* (no member has joined): retry shortly."""
    STALE = "stale"
    """A membership or release command that an earlier one overtook; harmless."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    code: Code = Code.OK
    message: str = ""
    reason: str = ""
    """A machine-readable reason where ``code`` alone is ambiguous (``UNREGISTERING``,
    ``ALREADY_IN_GROUP``); the node derives the rest from ``code``."""

    @property
    def ok(self) -> bool:
        return self.code is Code.OK


OK = Result()


@dataclass(slots=True, kw_only=True)
class MemberRecord:
    node: NodeId
    incarnation: int
    address: str = ""
    roles: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    up: bool = True
    draining: bool = False
    """Shutting down gracefully: up (its lease still counts) but eligible for nothing."""
    down_index: int = 0
    """The log index of the MemberDown that took this incarnation down (0: never)."""

    def candidate(self) -> Candidate:
        return Candidate(
            node=self.node, roles=self.roles, kinds=self.kinds, up=self.up and not self.draining
        )


@dataclass(slots=True, kw_only=True)
class NameRecord:
    spec: NameSpec
    holder: NodeId = ""
    holder_incarnation: int = 0
    token: int = 0
    reason: StartReason = StartReason.NEW
    state: bytes | None = None
    """State handed over by the last handoff, for the activation that holds ``token``."""
    groups: frozenset[str] = frozenset()
    """Replaced, never changed in place: most names are in no group and share the one
    empty frozenset (a set per record cost 216 bytes and a tracked object per name)."""
    unregistering: bool = False
    """Unregistered, but its holder has not confirmed the stop yet: the name is gone for
    clients, yet it cannot be registered again until the holder releases it or is
    declared down (otherwise a lagging holder could still run it beside the new one)."""
    placed_epoch: int = field(default=-1, compare=False)
    """The ``placement_epoch`` at which ``holder`` was placed (local, not in snapshots;
    -1: unknown). Every holder is placed by ``_hold`` at its owner, so while no change
    of the candidates since could have moved it, it is still the owner
    (``RegistryState.still_owner``)."""

    def activation(
        self,
        checkpoint: StoredCheckpoint | None = None,
        reminders: tuple[StoredReminder, ...] = (),
    ) -> Activation:
        """What the holder runs; with no handed-off state, a FAILOVER or RESTART starts
        from ``checkpoint`` (``registry.core.durable`` rule 5)."""
        state, restored_from = self.state, 0
        if checkpoint is not None and state is None and self.reason in _RESUMABLE:
            state, restored_from = checkpoint.state, checkpoint.index
        return Activation(
            name=self.spec.name,
            kind=self.spec.kind,
            args=self.spec.args,
            token=self.token,
            reason=self.reason,
            state=state,
            restored_from=restored_from,
            restart=self.spec.restart,
            reminders=reminders,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Activation:
    """One name a given member should be running right now."""

    name: str
    kind: str
    args: bytes
    token: int
    reason: StartReason
    state: bytes | None
    restored_from: int = 0
    """The log index of the checkpoint ``state`` comes from (0: not a checkpoint)."""
    restart: RestartPolicy | None = None
    """The registration's restart policy (``None``: the node's defaults)."""
    reminders: tuple[StoredReminder, ...] = ()
    """Its durable reminders, as of the start (``registry.core.durable`` rule 7)."""


_RESUMABLE = (StartReason.FAILOVER, StartReason.RESTART)


def _restart_row(policy: RestartPolicy | None) -> list[list[Any]]:
    """The snapshot row's optional last element (absent: the node's defaults)."""
    if policy is None:
        return []
    row: list[Any] = [policy.mode, policy.max_restarts, policy.window]
    if policy.lazy or policy.idle_after:
        row += [policy.lazy, policy.idle_after]
    return [row]


def _snapshot_row(r: NameRecord) -> list[Any]:
    """A name's snapshot row. The snapshot is taken on the control loop (every
    ``max(1024, names)`` entries), so the common shape — no args, roles, priority,
    state, groups or restart policy — is built without a call per field."""
    spec = r.spec
    if not (spec.args or spec.roles or spec.priority or spec.restart or r.groups) and (
        r.state is None
    ):
        return [
            spec.name,
            spec.kind,
            "",
            [],
            None,
            r.holder,
            r.holder_incarnation,
            r.token,
            r.reason._value_,
            None,
            [],
            r.unregistering,
        ]
    return [
        spec.name,
        spec.kind,
        _b64(spec.args),
        list(spec.roles),
        None if spec.priority is None else [list(t) for t in spec.priority],
        r.holder,
        r.holder_incarnation,
        r.token,
        r.reason._value_,
        _b64(r.state),
        sorted(r.groups) if r.groups else [],
        r.unregistering,
        *_restart_row(spec.restart),
    ]


def _b64(data: bytes | None) -> str | None:
    # Most names carry no args and no state: skip the encoder for those.
    if not data:
        return None if data is None else ""
    return base64.b64encode(data).decode()


def validate_identifier(what: str, value: str) -> str | None:
    """Why ``value`` is not a usable name/group/kind, or ``None`` if it is."""
    if not value:
        return f"{what} must not be empty"
    if value.isascii() and value.isprintable() and len(value) <= MAX_NAME_BYTES:
        return None  # the common case, checked cheaply
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"{what} is longer than {MAX_NAME_BYTES} bytes"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} is not valid UTF-8"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        return f"{what} contains control characters"
    return None


_Shape = tuple[str, tuple[str, ...], Priority | None]


def _shape(spec: NameSpec) -> _Shape:
    """What placement looks at besides the name itself."""
    return (spec.kind, spec.roles, spec.priority)


def _only_taken_out(old: Mapping[NodeId, Candidate], new: Mapping[NodeId, Candidate]) -> bool:
    """``new`` is ``old`` with some up members no longer up, and nothing else changed."""
    if old.keys() != new.keys():
        return False
    for node, now in new.items():
        was = old[node]
        if now != was and not (was.up and not now.up and replace(was, up=False) == now):
            return False
    return True


def _shape_order(item: tuple[_Shape, set[str]]) -> str:
    return repr(item[0])  # any fixed order: shapes hold None, tuples and strings


class RegistryState:
    def __init__(self, placement: Placement | None = None) -> None:
        self.names: dict[str, NameRecord] = {}
        self.members: dict[NodeId, MemberRecord] = {}
        self.groups: dict[str, set[str]] = {}
        self.admitted: dict[NodeId, tuple[str, str]] = {}
        """Members an operator added at runtime: ``node -> (address, peer address)``."""
        self.retired: set[NodeId] = set()
        """Members an operator removed: never placed on, never admitted again."""
        self.epoch = 0
        self._unregistering = 0
        self._sorted: list[str] | None = None
        """Every key of ``names`` in order, built on demand and dropped when a name is
        added or deleted (``sorted_names``): ``List`` and a watch's first listing sorted
        every name per call (100k random names: 39 ms). Kept up to date on every write
        instead, it cost each registration 1.7 µs more on every replica."""
        """How many records are being unregistered (``live_count``)."""
        self.placement_epoch = 0
        """The last view change that changed who may hold what (the candidates): a new
        incarnation of an otherwise unchanged member moves ``epoch`` but not this, and
        owners only change with it. Local (not in snapshots): a restore sets it to
        ``epoch``."""
        self.placement_stable_since = 0
        """The oldest placement epoch since which every change of the candidates only
        took members out (down or draining, nothing else about any member changed).
        A holder placed in or after it and still a candidate is still its owner: the
        ring is ketama with equal weights, whose points per node depend only on that
        node, so removing a node moves only its own names; a priority tier that keeps
        an eligible node keeps its ring minus the removed points, and a tier emptied by
        a removal held only removed nodes (tests/unit/test_state_still_owner.py). Local,
        like ``placement_epoch``."""
        """Log index of the last change to the view (members, their roles, up/down)."""
        self.applied_index = 0
        self._placement = placement or Placement()
        self._held: dict[NodeId, set[str]] = {}
        self._waiting: set[str] = set()
        self._waiting_by_shape: dict[_Shape, set[str]] = {}
        """The waiting names by placement shape: a view change checks each shape once,
        so 100k names waiting for a down member cost nothing until it returns."""
        self._waiting_reason: dict[str, StartReason] = {}
        self._candidates: dict[NodeId, Candidate] = {}
        self._touched: set[str] = set()
        self.checkpoints = Checkpoints()
        """The last checkpoint of each name (``registry.core.durable``)."""
        self.reminders = Reminders()
        """The durable reminders of each name (``registry.core.durable``)."""

    def take_touched(self) -> set[str]:
        """Names whose holder, token or registration changed since the last call: the
        replica reconciles just these instead of every name it holds."""
        touched, self._touched = self._touched, set()
        return touched

    def _touch(self, name: str) -> None:
        self._touched.add(name)

    # -- queries -----------------------------------------------------------------------

    def owner(self, name: str) -> NodeId | None:
        """Where placement wants ``name`` now (may differ from its holder mid-handoff)."""
        record = self.names.get(name)
        if record is None:
            return None
        return self._placement.owner(record.spec, self._candidates, self.epoch)

    def owner_of(self, record: NameRecord) -> NodeId | None:
        """``owner`` of a record in hand (a full reconcile asks it of every held name)."""
        return self._placement.owner(record.spec, self._candidates, self.epoch)

    def owners(self) -> Callable[[NameRecord], NodeId | None]:
        """``owner_of`` for many records in one view: each shape's ring is found once
        (a full reconcile after a view change asks it of every held name; per name, the
        general ``owner`` cost twice the ring lookup itself). Valid until the view
        changes."""
        by_shape: dict[_Shape, Callable[[str], NodeId | None] | None] = {}
        placement, candidates, epoch = self._placement, self._candidates, self.epoch

        def owner(record: NameRecord) -> NodeId | None:
            spec = record.spec
            shape = (spec.kind, spec.roles, spec.priority)
            if shape in by_shape:
                owner_of = by_shape[shape]
            else:
                owner_of = by_shape[shape] = placement.owner_of_shape(spec, candidates, epoch)
            return owner_of(spec.name) if owner_of is not None else None

        return owner

    def still_owner(self, record: NameRecord) -> bool:
        """``record``'s holder is certainly still its owner, known without placement
        (``placement_stable_since``); False means "ask placement", not "it moved"."""
        if record.placed_epoch < self.placement_stable_since:
            return False
        candidate = self._candidates.get(record.holder)
        return candidate is not None and candidate.up

    def sorted_names(self) -> list[str]:
        """Every registered name (being unregistered included), in order. Sorted once
        per change of the name set; the caller must not modify the list."""
        if self._sorted is None:
            self._sorted = sorted(self.names)
        return self._sorted

    def names_with_prefix(self, prefix: str) -> Iterator[str]:
        """The registered names (being unregistered included) that start with
        ``prefix``, in order: a bisection to the first, then one step each."""
        ordered = self.sorted_names()
        for at in range(bisect_left(ordered, prefix), len(ordered)):
            name = ordered[at]
            if not name.startswith(prefix):
                return
            yield name

    def live_count(self) -> int:
        """Registered names not being unregistered (O(1): status and metrics ask it)."""
        return len(self.names) - self._unregistering

    def held_count(self, node: NodeId) -> int:
        """How many names ``node`` holds (O(1): status pages poll this)."""
        return len(self._held.get(node, ()))

    def held_names(self, node: NodeId) -> Iterator[str]:
        """The names ``node`` holds, unordered (for checks that need no order)."""
        return iter(self._held.get(node, ()))

    def held_by(self, node: NodeId) -> Iterator[NameRecord]:
        for name in sorted(self._held.get(node, ())):
            yield self.names[name]

    def activations_for(self, node: NodeId, incarnation: int) -> dict[str, Activation]:
        """What ``node`` (in that incarnation) is entitled to run, by the log."""
        return {
            r.spec.name: self.activation(r)
            for r in self.held_by(node)
            if r.holder_incarnation == incarnation and not r.unregistering
        }

    def checkpoint_of(self, name: str) -> StoredCheckpoint | None:
        return self.checkpoints.get(name)

    def reminders_of(self, name: str) -> tuple[StoredReminder, ...]:
        return self.reminders.of(name)

    def activation(self, record: NameRecord) -> Activation:
        """``record``'s activation with its last checkpoint and its reminders."""
        name = record.spec.name
        return record.activation(self.checkpoints.get(name), self.reminders.of(name))

    def moving_from(self, node: NodeId, incarnation: int) -> list[NameRecord]:
        """Names ``node`` holds whose owner is now someone else: it must hand them off."""
        return [
            r
            for r in self.held_by(node)
            if r.holder_incarnation == incarnation
            and not r.unregistering
            and self.owner(r.spec.name) != node
        ]

    def registered(self, name: str) -> NameRecord | None:
        """The record of a live registration (``None`` while it is being unregistered)."""
        record = self.names.get(name)
        return None if record is None or record.unregistering else record

    def up_members(self) -> list[MemberRecord]:
        return [m for _, m in sorted(self.members.items()) if m.up]

    def waiting(self) -> list[str]:
        return sorted(self._waiting)

    # -- apply -------------------------------------------------------------------------

    def apply(self, index: int, command: Command) -> Result:
        """Apply one committed command. Deterministic; never raises for bad input."""
        self.applied_index = index
        if isinstance(command, Register):
            return self._register(index, command)
        if isinstance(command, Unregister):
            return self._unregister(command)
        if isinstance(command, Join):
            return self._join(command)
        if isinstance(command, Leave):
            return self._leave(command)
        if isinstance(command, MemberUp):
            return self._member_up(index, command)
        if isinstance(command, MemberDown):
            return self._member_down(index, command)
        if isinstance(command, MemberAdmit):
            return self._member_admit(command)
        if isinstance(command, MemberRetire):
            return self._member_retire(index, command)
        if isinstance(command, Checkpoint):
            return self._checkpoint(index, command)
        if isinstance(command, Quit):
            return self._quit(command)
        if isinstance(command, Remind):
            return self._remind(command)
        if isinstance(command, Releases):
            for item in command.items:
                self._released(index, item, assign=False)
            self._assign_waiting(index, [item.name for item in command.items])
            return OK  # a stale item changes nothing, as a stale Released does
        return self._released(index, command)

    def _register(self, index: int, command: Register) -> Result:
        specs = command.specs
        if not specs:
            return Result(code=Code.INVALID_ARGUMENT, message="no names to register")
        if len(specs) > MAX_REGISTER_BATCH:
            return Result(
                code=Code.INVALID_ARGUMENT,
                message=f"{len(specs)} names in one batch; the limit is {MAX_REGISTER_BATCH}",
            )
        seen: set[str] = set()
        hostable_shapes: set[tuple[str, tuple[str, ...]]] = set()
        for spec in specs:
            problem = validate_identifier("name", spec.name) or validate_identifier(
                "kind", spec.kind
            )
            if not problem and spec.restart is not None:
                problem = spec.restart.problem()
            if problem:
                return Result(code=Code.INVALID_ARGUMENT, message=f"{spec.name!r}: {problem}")
            if spec.name in seen:
                return Result(
                    code=Code.INVALID_ARGUMENT, message=f"{spec.name!r} appears twice in the batch"
                )
            seen.add(spec.name)
            existing = self.names.get(spec.name)
            if existing is not None and existing.unregistering:
                return Result(
                    code=Code.FAILED_PRECONDITION,
                    message=f"{spec.name!r} was unregistered and is still stopping on "
                    f"{existing.holder}; retry shortly",
                    reason="UNREGISTERING",
                )
            if existing is not None:
                return Result(
                    code=Code.ALREADY_EXISTS, message=f"{spec.name!r} is already registered"
                )
            if spec.priority is not None and not any(spec.priority):
                return Result(
                    code=Code.INVALID_ARGUMENT, message=f"{spec.name!r}: empty priority list"
                )
            if not self.members:
                return Result(
                    code=Code.UNAVAILABLE,
                    message="no member has joined the cluster yet; retry shortly",
                )
            hostable = spec.priority is None and (spec.kind, spec.roles) in hostable_shapes
            if not hostable and not could_ever_host(spec, self._candidates):
                roles = f" with roles {sorted(spec.roles)}" if spec.roles else ""
                return Result(
                    code=Code.FAILED_PRECONDITION,
                    message=f"no member can host {spec.name!r}: none runs kind "
                    f"{spec.kind!r}{roles}",
                )
            if spec.priority is None:
                hostable_shapes.add((spec.kind, spec.roles))
        self._sorted = None
        # Straight to a holder where placement finds one (what ``_wait`` then
        # ``_assign_waiting`` come to, at a third of the cost per name); the rest wait.
        owner_of, candidates, epoch = self._placement.owner, self._candidates, self.epoch
        names = self.names
        for spec in specs:
            record = names[spec.name] = NameRecord(spec=spec)
            owner = owner_of(spec, candidates, epoch)
            if owner is None:
                self._wait(spec.name, StartReason.NEW)
            else:
                self._hold(record, owner, index)
        return OK

    def _checkpoint(self, index: int, command: Checkpoint) -> Result:
        record = self.registered(command.name)
        if record is None or not record.holder or record.token != command.token:
            current = record.token if record is not None else 0
            return Result(
                code=Code.STALE,
                message=f"checkpoint of {command.name!r} from token {command.token} refused: "
                f"the current token is {current or 'none (not registered)'}",
            )
        self.checkpoints.put(index, command.name, command.token, command.seq, command.state)
        return OK

    def _remind(self, command: Remind) -> Result:
        record = self.registered(command.name)
        if record is None or not record.holder or record.token != command.token:
            return Result(
                code=Code.STALE,
                message=f"{command.name!r}: activation {command.token} is not the current one",
            )
        if command.op == "cancel":
            self.reminders.cancel(command.name, command.reminder)
        elif command.op == "fired":
            self.reminders.fired(command.name, command.reminder, command.period)
        else:
            problem = validate_identifier("reminder", command.reminder) or reminder_problem(
                command.due, command.every, self.reminders.count(command.name)
            )
            if problem:
                return Result(code=Code.INVALID_ARGUMENT, message=problem)
            self.reminders.set(
                command.name,
                StoredReminder(reminder=command.reminder, due=command.due, every=command.every),
            )
        return OK

    def _quit(self, command: Quit) -> Result:
        record = self.registered(command.name)
        if record is None or not record.holder or record.token != command.token:
            return Result(
                code=Code.STALE,
                message=f"{command.name!r}: activation {command.token} is not the current one",
            )
        return self._unregister(Unregister(name=command.name))

    def _unregister(self, command: Unregister) -> Result:
        record = self.registered(command.name)
        if record is None:
            return Result(code=Code.NOT_FOUND, message=f"{command.name!r} is not registered")
        self._leave_all_groups(record)
        self._touch(record.spec.name)
        if record.holder:
            record.unregistering = True  # deleted when the holder releases or goes down
            self._unregistering += 1
        else:
            self._delete(record)
        return OK

    def _delete(self, record: NameRecord) -> None:
        name = record.spec.name
        if record.unregistering:
            self._unregistering -= 1
        self._leave_all_groups(record)
        self._release_holder(record)
        self._unwait(name)
        self._waiting_reason.pop(name, None)
        self.checkpoints.drop(name)
        self.reminders.drop(name)
        del self.names[name]
        self._sorted = None

    def _leave_all_groups(self, record: NameRecord) -> None:
        for group in sorted(record.groups):
            members = self.groups[group]
            members.discard(record.spec.name)
            if not members:
                del self.groups[group]
        record.groups = frozenset()

    def _join(self, command: Join) -> Result:
        problem = validate_identifier("group", command.group)
        if problem:
            return Result(code=Code.INVALID_ARGUMENT, message=problem)
        record = self.registered(command.name)
        if record is None:
            return Result(code=Code.NOT_FOUND, message=f"{command.name!r} is not registered")
        if command.group in record.groups:
            return Result(
                code=Code.ALREADY_EXISTS,
                message=f"{command.name!r} is already in group {command.group!r}",
                reason="ALREADY_IN_GROUP",
            )
        record.groups = record.groups | {command.group}
        self.groups.setdefault(command.group, set()).add(command.name)
        return OK

    def _leave(self, command: Leave) -> Result:
        members = self.groups.get(command.group)
        if members is None:
            return Result(code=Code.NOT_FOUND, message=f"no group {command.group!r}")
        if command.name not in members:
            return Result(
                code=Code.NOT_FOUND,
                message=f"{command.name!r} is not in group {command.group!r}",
            )
        members.discard(command.name)
        record = self.names[command.name]
        record.groups = record.groups - {command.group}
        if not members:
            del self.groups[command.group]
        return OK

    def _member_admit(self, command: MemberAdmit) -> Result:
        if command.node in self.retired:
            return Result(
                code=Code.FAILED_PRECONDITION,
                message=f"{command.node} was removed; its id is retired (use a new id)",
            )
        self.admitted[command.node] = (command.address, command.peer_address)
        return OK

    def _member_retire(self, index: int, command: MemberRetire) -> Result:
        self.retired.add(command.node)
        self.admitted.pop(command.node, None)
        record = self.members.get(command.node)
        if record is not None and not record.draining:
            # Eligible for nothing from now on: while it is up, its names move away by
            # handoff; once it is declared down, by failover (the lease rules still hold).
            record.draining = True
            self._view_changed(index)
        return OK

    def forget_members(self, index: int) -> None:
        """Drop the membership (a snapshot restored into a new cluster): every held name
        waits, as after a failover, for the new cluster's members."""
        for node in sorted(self.members):
            self._fail_over_holder(node)
        self.members.clear()
        self.admitted.clear()
        self.retired.clear()
        self._view_changed(index)

    def _member_up(self, index: int, command: MemberUp) -> Result:
        existing = self.members.get(command.node)
        if existing is not None and command.incarnation < existing.incarnation:
            return Result(code=Code.STALE, message="an older incarnation")
        record = MemberRecord(
            node=command.node,
            incarnation=command.incarnation,
            address=command.address,
            roles=frozenset(command.roles),
            kinds=frozenset(command.kinds),
            draining=command.draining or command.node in self.retired,
        )
        if existing is not None and existing == record:
            return OK
        if existing is not None and existing.incarnation != command.incarnation:
            # The old process is gone (a node restarts or re-fences with a new incarnation).
            if existing.candidate() == record.candidate():
                self.members[command.node] = record
                self._view_changed(index, regrant=command.node)
                return OK
            self._fail_over_holder(command.node)
        self.members[command.node] = record
        self._view_changed(index)
        return OK

    def _member_down(self, index: int, command: MemberDown) -> Result:
        existing = self.members.get(command.node)
        if existing is None or existing.incarnation != command.incarnation or not existing.up:
            return Result(code=Code.STALE, message="member already down or restarted")
        existing.up = False
        existing.down_index = index
        self._view_changed(index)
        self._fail_over_to_owners(command.node, index)
        return OK

    def _released(self, index: int, command: Released, *, assign: bool = True) -> Result:
        record = self.names.get(command.name)
        if record is None or record.token != command.token or not record.holder:
            return Result(code=Code.STALE, message="that activation was already replaced")
        if record.unregistering:
            self._delete(record)
            return OK
        self._release_holder(record)
        record.state = command.state
        self._wait(
            command.name,
            StartReason.HANDOFF if command.state is not None else StartReason.RESTART,
        )
        if assign:
            self._assign_waiting(index, [command.name])
        return OK

    # -- holder bookkeeping ------------------------------------------------------------

    def _view_changed(self, index: int, regrant: NodeId = "") -> None:
        """A new view from ``index`` on. ``regrant``: a member that came back with a new
        incarnation and is otherwise unchanged (see ``_regrant``)."""
        self.epoch = index
        candidates = {n: m.candidate() for n, m in sorted(self.members.items())}
        if candidates != self._candidates:
            if not _only_taken_out(self._candidates, candidates):
                self.placement_stable_since = index
            self.placement_epoch = index
        self._candidates = candidates
        if regrant:
            self._regrant(regrant, index)
        self._assign_waiting(index)

    def _regrant(self, node: NodeId, index: int) -> None:
        """Every name of ``node``'s old incarnation fails over, as ``_fail_over_holder``
        does; but the view is the same, so each one that ``node`` still owns would be
        placed right back on it with the token ``index``: do that in place, without the
        round trip through the waiting sets (a node re-fencing with 30k names made every
        node apply that twice, and a 1 s lease has no room for it). The rest wait and are
        placed by ``_assign_waiting``, as before. The outcome is the same record for
        record (tests/unit/test_state_regrant.py)."""
        names, touched, members = self.names, self._touched, self.members
        incarnation = members[node].incarnation
        held = self._held.get(node, set())
        owner_of, still_owner = self.owners(), self.still_owner
        leaving: list[str] = []
        for name in list(held):  # any order: names are independent
            record = names[name]
            if record.unregistering:
                self._delete(record)  # its holder is gone, so the stop is certain
                continue
            touched.add(name)
            # The view is unchanged, so a name placed since it last moved owners is
            # still the node's without hashing it again (``still_owner``): 33k lookups
            # per re-fence were most of every node's Ready in issue 13's heal.
            if still_owner(record) or owner_of(record) == node:
                record.holder_incarnation = incarnation
                record.token = index
                record.reason = StartReason.FAILOVER
                record.state = None
                self._waiting_reason.pop(name, None)
            else:
                leaving.append(name)
        for name in leaving:
            held.discard(name)
            self._orphan(names[name])

    def _fail_over_holder(self, node: NodeId) -> None:
        # One entry takes every name of the node (100k at scale): the loop body is the
        # node's stall, so it does only what a failed-over name needs.
        names, touched = self.names, self._touched
        for name in list(self._held.get(node, ())):  # any order: names are independent
            record = names[name]
            if record.unregistering:
                self._delete(record)  # its holder is gone, so the stop is certain
                continue
            touched.add(name)
            self._orphan(record)
        self._held.pop(node, None)

    def _orphan(self, record: NameRecord) -> None:
        """``record`` lost its holder (taken out of the holder set by the caller) and
        waits to be placed again, without state."""
        record.holder = ""
        record.holder_incarnation = 0
        record.state = None
        self._wait(record.spec.name, StartReason.FAILOVER)

    def _fail_over_to_owners(self, node: NodeId, index: int) -> None:
        """``_fail_over_holder`` and then ``_assign_waiting``, in one pass over the names
        of ``node`` (just declared down; the view already changed): each goes straight
        to its owner, or waits if its shape has none. The outcome is theirs record for
        record (tests/unit/test_state_failover_direct.py), without putting every name
        into the waiting sets and taking it out again: a ``MemberDown`` of 26k names
        held each survivor's loop 200-480 ms on 2 loaded cores (issue 13's heal)."""
        names, reasons = self.names, self._waiting_reason
        rings: dict[_Shape, Callable[[str], NodeId | None] | None] = {}
        for name in list(self._held.get(node, ())):  # any order: names are independent
            record = names[name]
            if record.unregistering:
                self._delete(record)  # its holder is gone, so the stop is certain
                continue
            spec = record.spec
            shape = _shape(spec)
            if shape not in rings:
                rings[shape] = self._placement.owner_of_shape(spec, self._candidates, self.epoch)
            owner_of = rings[shape]
            if owner_of is None:
                self._touched.add(name)
                self._orphan(record)
                continue
            owner = owner_of(name)
            assert owner is not None  # a shape with an owner places every name
            reasons[name] = StartReason.FAILOVER  # what _hold starts it with
            self._hold(record, owner, index)
        self._held.pop(node, None)

    def _wait(self, name: str, reason: StartReason) -> None:
        self._waiting.add(name)
        self._waiting_by_shape.setdefault(_shape(self.names[name].spec), set()).add(name)
        # FAILOVER sticks: a name that lost its holder never pretends to carry state.
        if self._waiting_reason.get(name) is not StartReason.FAILOVER:
            self._waiting_reason[name] = reason

    def _unwait(self, name: str) -> None:
        if name not in self._waiting:
            return
        self._waiting.discard(name)
        shape = _shape(self.names[name].spec)
        group = self._waiting_by_shape[shape]
        group.discard(name)
        if not group:
            del self._waiting_by_shape[shape]

    def _release_holder(self, record: NameRecord) -> None:
        self._touch(record.spec.name)
        if record.holder:
            held = self._held.get(record.holder)
            if held is not None:
                held.discard(record.spec.name)
            record.holder = ""
            record.holder_incarnation = 0

    def _assign_waiting(self, index: int, only: list[str] | None = None) -> None:
        """Give waiting names a holder. Placement depends only on the view and the name,
        so outside a view change only the names that just started waiting (``only``)
        can have gained an owner: the others are not rescanned (100k names waiting for
        a down member must not make every registration cost 100k lookups). After a view
        change, the waiting names go a shape at a time: one ring per shape, and a shape
        without an owner is skipped whole. Each name's outcome depends only on the view
        and the name, so the order is free."""
        if only is not None:
            for name in sorted(only):
                if name not in self._waiting:
                    continue
                record = self.names[name]
                owner = self._placement.owner(record.spec, self._candidates, self.epoch)
                if owner is not None:
                    self._unwait(name)
                    self._hold(record, owner, index)
            return
        for shape, group in sorted(self._waiting_by_shape.items(), key=_shape_order):
            sample = self.names[next(iter(group))].spec
            owner_of = self._placement.owner_of_shape(sample, self._candidates, self.epoch)
            if owner_of is None:
                continue
            for name in group:
                owner = owner_of(name)
                assert owner is not None  # a shape with an owner places every name
                self._hold(self.names[name], owner, index)
            self._waiting.difference_update(group)
            del self._waiting_by_shape[shape]

    def _hold(self, record: NameRecord, owner: NodeId, index: int) -> None:
        """``owner`` holds the (no longer waiting) ``record`` from ``index`` on."""
        name = record.spec.name
        reason = self._waiting_reason.pop(name, StartReason.NEW)
        self._touched.add(name)
        record.holder = owner
        record.placed_epoch = self.placement_epoch
        record.holder_incarnation = self.members[owner].incarnation
        record.token = index
        record.reason = reason
        if reason is not StartReason.HANDOFF:
            record.state = None
        self._held.setdefault(owner, set()).add(name)

    # -- snapshot ----------------------------------------------------------------------

    def snapshot(self) -> bytes:
        body: dict[str, Any] = {
            "epoch": self.epoch,
            "applied_index": self.applied_index,
            "members": [
                [
                    m.node,
                    m.incarnation,
                    m.address,
                    sorted(m.roles),
                    sorted(m.kinds),
                    m.up,
                    m.draining,
                    m.down_index,
                ]
                for _, m in sorted(self.members.items())
            ],
            "names": [_snapshot_row(r) for r in map(self.names.__getitem__, self.sorted_names())],
            "waiting": [[n, self._waiting_reason[n].value] for n in sorted(self._waiting)],
        }
        if self.checkpoints:  # absent: snapshots without checkpoints stay as they were
            body["checkpoints"] = self.checkpoints.to_rows()
        if self.reminders:
            body["reminders"] = self.reminders.to_rows()
        if self.admitted or self.retired:  # absent: snapshots stay as they were
            body["admitted"] = [[n, *a] for n, a in sorted(self.admitted.items())]
            body["retired"] = sorted(self.retired)
        return json.dumps(body, separators=(",", ":")).encode()

    @classmethod
    def restore(cls, data: bytes, placement: Placement | None = None) -> RegistryState:
        state = cls(placement)
        if not data:
            return state
        body = json.loads(data)
        for node, inc, address, roles, kinds, up, draining, *rest in body["members"]:
            state.members[node] = MemberRecord(
                node=node,
                incarnation=inc,
                address=address,
                roles=frozenset(roles),
                kinds=frozenset(kinds),
                up=up,
                draining=draining,
                down_index=rest[0] if rest else 0,  # snapshots before down_index: 0
            )
        for row in body["names"]:
            name, kind, args, roles, priority, holder, inc, token, reason, blob, groups, gone = row[
                :12
            ]
            extra = row[12] if len(row) > 12 else None
            restart = (
                None
                if extra is None
                else shared_restart_policy(
                    extra[0],
                    extra[1],
                    extra[2],
                    extra[3] if len(extra) > 3 else False,
                    extra[4] if len(extra) > 3 else 0.0,
                )
            )
            spec = NameSpec(
                name=name,
                kind=kind,
                args=base64.b64decode(args) if args else b"",
                roles=tuple(roles),
                priority=None if priority is None else tuple(tuple(t) for t in priority),
                restart=restart,
            )
            state.names[name] = NameRecord(
                spec=spec,
                holder=holder,
                holder_incarnation=inc,
                token=token,
                reason=StartReason(reason),
                state=None if blob is None else base64.b64decode(blob),
                groups=frozenset(groups),
                unregistering=gone,
            )
            if holder:
                state._held.setdefault(holder, set()).add(name)
            state._unregistering += bool(gone)
            for group in groups:
                state.groups.setdefault(group, set()).add(name)
        for name, reason in body["waiting"]:
            state._wait(name, StartReason(reason))
        state.admitted = {n: (a, p) for n, a, p in body.get("admitted", [])}
        state.retired = set(body.get("retired", []))
        state.checkpoints = Checkpoints.from_rows(body.get("checkpoints", []))
        state.reminders = Reminders.from_rows(body.get("reminders", []))
        state.epoch = body["epoch"]
        state.applied_index = body["applied_index"]
        state._candidates = {n: m.candidate() for n, m in sorted(state.members.items())}
        state.placement_epoch = state.placement_stable_since = state.epoch
        return state
