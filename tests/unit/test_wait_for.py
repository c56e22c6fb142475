"""The harness's bounded wait: what counts as "not yet", and what fails at once.

CI once failed ``test_a_follower_far_behind_catches_up_by_snapshot_with_nothing_refused``
at the first probe: ``LocalCluster.owner`` asked a follower that had not applied the
name yet, and raised an ``AssertionError`` that ``wait_for`` does not retry. It now
raises ``NotYet``, which ``wait_for`` polls on.
"""

from __future__ import annotations

import pytest

from registry.testing.local_cluster import NotYet, Timeout, wait_for


def test_not_yet_is_polled_on_until_the_probe_answers() -> None:
    refusals = iter([NotYet("'x' is not registered here yet"), NotYet("still not")])

    def probe() -> tuple[str, int]:
        for refusal in refusals:
            raise refusal
        return ("n1", 7)

    assert wait_for("x to be placed", probe, timeout=5.0, interval=0.001) == ("n1", 7)


def test_not_yet_until_the_deadline_names_the_last_reason() -> None:
    def probe() -> None:
        raise NotYet("'x' is waiting for a member")

    with pytest.raises(Timeout, match="last seen: NotYet: 'x' is waiting for a member"):
        wait_for("x to be placed", probe, timeout=0.05, interval=0.01)


def test_any_other_assertion_fails_at_once() -> None:
    calls = []

    def probe() -> None:
        calls.append(1)
        raise AssertionError("a real failure")

    with pytest.raises(AssertionError, match="a real failure"):
        wait_for("anything", probe, timeout=5.0, interval=0.001)
    assert len(calls) == 1
