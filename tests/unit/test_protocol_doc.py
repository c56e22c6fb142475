"""docs/protocol.md lists exactly the reasons nodes send, with the same code and retry
rules, so other-language clients can rely on it."""

from __future__ import annotations

import re
from pathlib import Path

from registry.wire.errors import REASONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def test_protocol_doc_lists_every_reason_with_its_code_and_retry_rule() -> None:
    rows = re.findall(
        r"^\| `([A-Z_]+)` \| ([A-Z_]+) \| (yes|no) \| (yes|no) \|", DOC.read_text(), re.M
    )
    documented = {name: (code, retry == "yes", ran == "yes") for name, code, retry, ran in rows}
    expected = {r.name: (r.code, r.retry, r.may_have_run) for r in REASONS.values()}
    assert documented == expected
