"""The versioned peer protocol (issue 17): a node that speaks a version outside the range
its peers accept is refused on every stream, both ways, with a clear rate-limited line,
and takes no part (the two good nodes keep their quorum and term); restarted with a
supported version it joins by itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.node.peer_protocol import TEST_ENV
from registry.testing.local_cluster import LocalCluster, wait_for
from tests.ops.membership_support import refused


def test_a_peer_of_an_unsupported_protocol_version_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LocalCluster(tmp_path, 3, preset="local") as c:
        c.start_node("n1")
        c.start_node("n2")
        monkeypatch.setenv(TEST_ENV, "99")
        c.start_node("n3")
        monkeypatch.delenv(TEST_ENV)

        def good_pair_leads() -> str | None:
            statuses = [c.status(n) for n in ("n1", "n2")]
            leaders = {s.leader for s in statuses}
            return (
                statuses[0].leader
                if len(leaders) == 1 and all(s.quorum for s in statuses) and statuses[0].leader
                else None
            )

        wait_for("n1 and n2 to elect a leader", good_pair_leads, 20)
        wait_for(
            "n3 refused by n1 and n2",
            lambda: all(refused(c, n, "protocol_version") > 0 for n in ("n1", "n2")),
            15,
        )
        wait_for("n3 to refuse them too", lambda: refused(c, "n3", "protocol_version") > 0, 15)
        term = c.status("n1").term
        assert not c.status("n3").quorum
        log = c.nodes["n1"].log_path.read_text()
        lines = [line for line in log.splitlines() if "peer protocol mismatch" in line]
        assert lines and "n3 speaks version 99" in lines[0] and "accepts 0-1" in lines[0], lines[:2]
        assert c.status("n1").term == term and c.status("n2").quorum

        c.terminate("n3")
        c.start_node("n3")  # now speaking this release's version
        c.wait_ready(timeout=30)
