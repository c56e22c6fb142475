"""Checkpoints in the replicated state machine (``registry.core.durable``): fenced by
token, ordered by seq, restored on failover/restart, kept by snapshots, dropped with
the name."""

from __future__ import annotations

import random

import pytest

from registry.core.commands import (
    Checkpoint,
    Command,
    InvalidCommand,
    MemberUp,
    NameSpec,
    Quit,
    Register,
    Remind,
    RestartPolicy,
    Unregister,
    decode,
    encode,
)
from registry.core.state import Code, RegistryState, Result, StartReason
from tests.unit.test_state import Log, assert_unchanged


def _checkpoint(
    log: Log, name: str, state: bytes, *, token: int | None = None, seq: int = 1
) -> Result:
    tok = token if token is not None else log.record(name).token
    return log.apply(Checkpoint(name=name, token=tok, seq=seq, state=state))


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_durable_commands_round_trip_through_both_log_encodings(binary: bool) -> None:
    policy = RestartPolicy(mode="temporary", max_restarts=0, window=2.5, lazy=True, idle_after=9)
    commands: list[Command] = [
        Checkpoint(name="w", token=7, seq=3, state=b"\x00\xff state"),
        Quit(name="w", token=7),
        Remind(name="w", token=7, reminder="r", op="set", due=1.7e9, every=0.5),
        Remind(name="w", token=7, reminder="r", op="fired", period=12),
        Register(specs=(NameSpec(name="w", kind="k", restart=policy),)),
    ]
    for command in commands:
        assert decode(encode(command, binary=binary)) == command


def test_a_checkpoint_of_the_current_token_is_kept_with_its_index() -> None:
    log = Log("n1", "n2", "n3")
    log.register("w")
    assert _checkpoint(log, "w", b"count=3").ok
    kept = log.state.checkpoints.get("w")
    assert kept is not None and (kept.index, kept.state) == (log.index, b"count=3")


def test_a_checkpoint_from_a_stale_token_is_refused_and_changes_nothing() -> None:
    log = Log("n1", "n2", "n3")
    log.register("w")
    old = log.record("w")
    old_token = old.token
    assert _checkpoint(log, "w", b"from-old", seq=1).ok
    log.down(old.holder)  # failover: a new activation, a new token
    assert log.record("w").token > old_token
    stale = Checkpoint(name="w", token=old_token, seq=2, state=b"late-from-old")
    result = assert_unchanged(log, stale, Code.STALE)
    assert "token" in result.message
    assert _checkpoint(log, "w", b"from-new", seq=1).ok  # the new one's checkpoint is kept
    assert_unchanged(log, stale, Code.STALE)  # and a stale one never overwrites it
    kept = log.state.checkpoints.get("w")
    assert kept is not None and kept.state == b"from-new"


def test_a_checkpoint_of_an_unknown_or_unregistered_name_is_refused() -> None:
    log = Log("n1")
    assert_unchanged(log, Checkpoint(name="nobody", token=1, seq=1, state=b"x"), Code.STALE)
    log.register("w")
    token = log.record("w").token
    log.apply(Unregister(name="w"))  # unregistering: the holder still runs it
    assert_unchanged(log, Checkpoint(name="w", token=token, seq=1, state=b"x"), Code.STALE)


def test_an_older_seq_of_the_same_token_never_overwrites_a_newer_one() -> None:
    log = Log("n1")
    log.register("w")
    assert _checkpoint(log, "w", b"second", seq=2).ok
    assert _checkpoint(log, "w", b"first, retried late", seq=1).ok  # acknowledged...
    kept = log.state.checkpoints.get("w")
    assert kept is not None and kept.state == b"second"  # ...but not applied


def test_failover_and_restart_start_from_the_last_checkpoint_new_and_handoff_do_not() -> None:
    log = Log("n1", "n2", "n3")
    log.register("w")
    fresh = log.state.activations_for(log.record("w").holder, 1)["w"]
    assert (fresh.reason, fresh.state, fresh.restored_from) == (StartReason.NEW, None, 0)
    _checkpoint(log, "w", b"v1")
    taken_at = log.index
    holder = log.record("w").holder
    log.down(holder)
    record = log.record("w")
    started = log.state.activations_for(record.holder, 1)["w"]
    assert started.reason is StartReason.FAILOVER
    assert (started.state, started.restored_from) == (b"v1", taken_at)
    # A handoff with state carries that state, not the checkpoint.
    log.up(holder, 2)
    if log.state.owner("w") != record.holder:
        log.release("w", b"handed")
        moved = log.state.activations_for(log.record("w").holder, 2)["w"]
        assert (moved.reason, moved.state, moved.restored_from) == (
            StartReason.HANDOFF,
            b"handed",
            0,
        )


def test_a_stateless_handoff_restarts_from_the_checkpoint() -> None:
    log = Log("n1", "n2", "n3")
    log.register("w")
    _checkpoint(log, "w", b"v1")
    taken_at = log.index
    log.release("w", None)  # Restart(): moves without state
    record = log.record("w")
    started = log.state.activations_for(record.holder, record.holder_incarnation)["w"]
    assert started.reason is StartReason.RESTART
    assert (started.state, started.restored_from) == (b"v1", taken_at)


def test_unregister_drops_the_checkpoint_and_a_new_registration_starts_empty() -> None:
    log = Log("n1")
    log.register("w")
    _checkpoint(log, "w", b"v1")
    log.apply(Unregister(name="w"))
    log.release("w")  # the holder confirms the stop: the name is deleted
    assert "w" not in log.state.names and log.state.checkpoints.get("w") is None
    log.register("w")
    again = log.state.activations_for("n1", 1)["w"]
    assert (again.reason, again.state) == (StartReason.NEW, None)


def test_snapshots_keep_checkpoints() -> None:
    log = Log("n1", "n2")
    log.register("a", "b")
    _checkpoint(log, "a", b"\x00a-state")
    copy = RegistryState.restore(log.state.snapshot())
    assert copy.snapshot() == log.state.snapshot()
    assert copy.checkpoints.get("a") == log.state.checkpoints.get("a")
    assert copy.checkpoints.get("b") is None


def test_no_stale_checkpoint_is_ever_applied_under_random_interleavings() -> None:
    """Ledger check: over random failovers and checkpoints from old and new tokens, the
    kept checkpoint always comes from the token current when it was applied, and the
    tokens of kept checkpoints never go backwards."""
    rng = random.Random(19)
    log = Log("n1", "n2", "n3")
    log.register("w")
    seen_tokens: list[int] = []
    incarnations = {"n1": 1, "n2": 1, "n3": 1}
    for step in range(300):
        record = log.record("w")
        if rng.random() < 0.2 and record.holder:
            node = record.holder
            log.down(node)
            incarnations[node] += 1
            log.apply(MemberUp(node=node, incarnation=incarnations[node]))
            continue
        current = log.record("w").token
        token = current if rng.random() < 0.6 else rng.choice([*seen_tokens, current - 1, 1])
        before = log.state.checkpoints.get("w")
        result = _checkpoint(log, "w", f"{token}:{step}".encode(), token=token, seq=step)
        after = log.state.checkpoints.get("w")
        if token != current:
            assert result.code is Code.STALE and after == before
        elif result.ok and after is not None:
            assert after.token == current
        if after is not None:
            assert not seen_tokens or after.token >= seen_tokens[-1]
            seen_tokens.append(after.token)
    assert len(set(seen_tokens)) > 3, "the run should cover several activations"


# -- restart policies and Quit -----------------------------------------------------------


def test_a_restart_policy_round_trips_through_the_log_and_snapshots() -> None:
    policy = RestartPolicy(mode="transient", max_restarts=2, window=3.5)
    register = Register(specs=(NameSpec(name="w", kind="k", restart=policy),))
    assert decode(encode(register)) == register
    log = Log("n1")
    assert log.apply(register).ok
    assert log.state.activations_for("n1", 1)["w"].restart == policy
    copy = RegistryState.restore(log.state.snapshot())
    assert copy.names["w"].spec.restart == policy and copy.snapshot() == log.state.snapshot()


def test_a_bad_restart_policy_is_refused_in_the_log_and_by_the_state_machine() -> None:
    bad = RestartPolicy(mode="sometimes")
    assert bad.problem() is not None
    log = Log("n1")
    refused = assert_unchanged(
        log, Register(specs=(NameSpec(name="w", kind="k", restart=bad),)), Code.INVALID_ARGUMENT
    )
    assert "permanent" in refused.message
    data = encode(Register(specs=(NameSpec(name="w", kind="k", restart=bad),)))
    with pytest.raises(InvalidCommand):
        decode(data)


def test_quit_unregisters_only_for_the_current_token() -> None:
    log = Log("n1", "n2", "n3")
    log.register("w")
    old = log.record("w")
    old_token, old_holder = old.token, old.holder
    log.down(old_holder)
    assert_unchanged(log, Quit(name="w", token=old_token), Code.STALE)  # superseded
    assert log.apply(Quit(name="w", token=log.record("w").token)).ok
    assert log.state.registered("w") is None and log.record("w").unregistering
