"""Node config fields for storage: ``segment_bytes`` and ``snapshot_entries`` load from
TOML, and bad values are refused with a message naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from registry.core.errors import ConfigError
from registry.node.config import load


def test_storage_fields_load_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text('id = "n1"\nsegment_bytes = 8192\nsnapshot_entries = 32\n')
    cfg = load(path)
    assert (cfg.segment_bytes, cfg.snapshot_entries) == (8192, 32)
    assert (load(None, id="n1").segment_bytes, load(None, id="n1").snapshot_entries) == (
        64 << 20,
        1024,
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("segment_bytes", 0, "≥ 1"),
        ("snapshot_entries", -1, "≥ 1"),
        ("segment_bytes", "8k", "segment_bytes must be a number of bytes"),
        ("snapshot_entries", 2.5, "snapshot_entries must be a whole number"),
    ],
)
def test_bad_storage_fields_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(None, id="n1", **{field: value})
