"""docs/guide.md: its data-request template matches the schemas, its commands exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spevidence.cli import app
from spevidence.data.docs import _KIND
from spevidence.data.schema import TABLES

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "guide.md").read_text(encoding="utf-8")


def _template() -> dict[str, dict[str, tuple[str, str]]]:
    """{extract: {field: (type, required)}} parsed from the guide's template tables."""
    section = GUIDE.split("### Data-request template", 1)[1].split("\n## ", 1)[0]
    out: dict[str, dict[str, tuple[str, str]]] = {}
    for block in re.split(r"^#### ", section, flags=re.M)[1:]:
        name = re.match(r"`(\w+)`", block)
        assert name is not None
        rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|", block, flags=re.M)
        out[name.group(1)] = {f: (t.strip(), r.strip()) for f, t, r in rows}
    return out


def test_template_lists_every_extract_and_field_with_its_type() -> None:
    template = _template()
    assert list(template) == list(TABLES)
    for name, table in TABLES.items():
        assert list(template[name]) == [c.name for c in table.columns], name
        for c in table.columns:
            kind, required = template[name][c.name]
            assert kind == _KIND[c.kind], (name, c.name)
            assert required.startswith("yes" if c.required else "no"), (name, c.name)
            assert ("may be empty" in required) == c.nullable, (name, c.name)


def _subcommands() -> set[str]:
    res = CliRunner().invoke(app, ["--help"], terminal_width=200)
    assert res.exit_code == 0
    return set(re.findall(r"^│ ([a-z][a-z-]*) ", res.output, flags=re.M)) | set(
        re.findall(r"^\s{2}([a-z][a-z-]*)\s{2,}", res.output, flags=re.M)
    )


def test_every_subcommand_in_the_guide_exists() -> None:
    available = _subcommands()
    assert {"run", "check", "init", "cite"} <= available  # the help was parsed
    # commands in code: `spevidence X ...` inline or "$ spevidence X" in console blocks
    mentioned = set(re.findall(r"(?:`|\$ )spevidence ([a-z][a-z-]+)", GUIDE))
    assert mentioned, "the guide names no command"
    assert mentioned <= available, sorted(mentioned - available)


@pytest.mark.parametrize("cmd", ["run", "reproduce", "validate", "synth", "pseudonymise"])
def test_options_used_in_the_guide_exist(cmd: str) -> None:
    used = set()
    for line in re.findall(rf"spevidence {cmd}\b[^\n`]*", GUIDE):
        used |= set(re.findall(r"(--[a-z][a-z-]*)", line))
    res = CliRunner().invoke(app, [cmd, "--help"], terminal_width=200)
    assert res.exit_code == 0
    missing = {o for o in used if o not in res.output}
    assert not missing, (cmd, sorted(missing))
