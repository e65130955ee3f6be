"""spevidence cite / spevidence._cite.cite read the packaged CITATION.cff."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from spevidence._cite import cite
from spevidence.cli import app
from spevidence.errors import SpevidenceError

ROOT = Path(__file__).resolve().parents[1]
CFF = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))


def test_packaged_copy_matches_repository_citation() -> None:
    root = (ROOT / "CITATION.cff").read_text(encoding="utf-8")
    packaged = (ROOT / "spevidence" / "CITATION.cff").read_text(encoding="utf-8")
    assert packaged == root, "copy CITATION.cff to spevidence/CITATION.cff"


def test_text_citation_has_title_version_year_and_authors() -> None:
    text = cite()
    assert "\n" not in text
    assert CFF["title"] in text
    assert f"version {CFF['version']}" in text
    assert f"({str(CFF['date-released'])[:4]})" in text
    assert text.startswith(CFF["authors"][0]["name"])


def test_bibtex_is_a_balanced_software_entry() -> None:
    bib = cite(format="bibtex")
    assert bib.startswith("@software{spevidence,")
    assert bib.count("{") == bib.count("}")
    fields = dict(re.findall(r"^\s+(\w+) = \{(.*)\},?$", bib, flags=re.M))
    assert fields["title"] == "{" + CFF["title"] + "}"
    assert fields["version"] == str(CFF["version"])
    assert fields["year"] == str(CFF["date-released"])[:4]
    # a corporate author is braced so BibTeX keeps it whole
    assert fields["author"] == "{" + CFF["authors"][0]["name"] + "}"


def test_bad_format_is_a_user_error() -> None:
    with pytest.raises(SpevidenceError, match="text' or 'bibtex"):
        cite(format="ris")  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["text", "bibtex"])
def test_cli_cite_prints_the_same_citation(fmt: str) -> None:
    res = CliRunner().invoke(app, ["cite", "--format", fmt])
    assert res.exit_code == 0, res.output
    assert res.output.strip() == cite(format=fmt)  # type: ignore[arg-type]


def test_cli_cite_rejects_unknown_format() -> None:
    res = CliRunner().invoke(app, ["cite", "--format", "ris"])
    assert res.exit_code != 0
