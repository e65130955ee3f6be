"""The protocol model: validation messages and the hash recorded in the bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from spevidence.errors import ProtocolError
from spevidence.protocol import load_protocol, protocol_hash

ROOT = Path(__file__).resolve().parents[1]


def test_every_shipped_protocol_validates() -> None:
    files = sorted((ROOT / "protocols").glob("*.yaml"))
    assert files, "no protocols shipped"
    for f in files:
        p = load_protocol(f)
        assert p.end > p.start
        assert len(protocol_hash(p)) == 64


def test_hash_changes_with_content_and_not_with_key_order() -> None:
    base = {"name": "x", "title": "t", "start": "2021-01-01", "end": "2022-01-01"}
    reordered = {"end": "2022-01-01", "title": "t", "start": "2021-01-01", "name": "x"}
    assert protocol_hash(load_protocol(base)) == protocol_hash(load_protocol(reordered))
    changed = {**base, "seed": 1}
    assert protocol_hash(load_protocol(base)) != protocol_hash(load_protocol(changed))


def test_errors_list_every_bad_field() -> None:
    bad = {
        "name": "x",
        "title": "t",
        "start": "2021-01-01",
        "end": "2022-01-01",
        "match": {"ratio": 0},
        "disclosure": {"rounding": 0},
        "typo_field": 1,
    }
    with pytest.raises(ProtocolError) as exc:
        load_protocol(bad)
    msg = str(exc.value)
    assert "3 problem(s)" in msg
    assert "match.ratio" in msg and "disclosure.rounding" in msg and "typo_field" in msg


def test_window_must_be_ordered() -> None:
    with pytest.raises(ProtocolError, match="must be after start"):
        load_protocol({"name": "x", "title": "t", "start": "2022-01-01", "end": "2021-01-01"})


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="not found"):
        load_protocol(tmp_path / "nope.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ProtocolError, match="not valid YAML"):
        load_protocol(f)
    f.write_text("- a list\n")
    with pytest.raises(ProtocolError, match="mapping"):
        load_protocol(f)
