"""Numbers and names as a reader sees them (issue 23): signs, money, precision at the
disclosure step, labels, marks, untruncated settings, the anchor a stale report lacks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from spevidence.report import reports_not_from
from spevidence.report._example import write_example_bundle
from spevidence.report._labels import label
from spevidence.report.narrative import Narrative, effect_size
from spevidence.report.narrative.shared import _f, _money
from spevidence.report.sections import NOT_AVAILABLE, REDACTED, markdown_table


@pytest.mark.parametrize(
    ("name", "want"),
    [
        ("treat:post", "Referred × after referral"),
        ("gp_m4_6", "GP appointments, 4–6 months before"),
        ("sexF", "Sex: female"),
        ("distance", "Propensity score (matching distance)"),
        ("prior_ae", "A&E attendances in the look-back window"),
        ("gp", "GP appointments"),
        ("some_new_thing", "Some new thing"),
    ],
)
def test_one_label_table(name: str, want: str) -> None:
    assert label(name) == want


def test_numbers_signs_and_money() -> None:
    assert _f(-0.0004, 3) == "0.000" and _f(-0.0006, 3) == "−0.001"
    assert _money(-0.02, 2) == "−£0.02" and _money(1234.5) == "£1,234"
    row = pd.Series(
        {"model": "linear", "estimate": -0.0, "conf_low": -0.01, "conf_high": 0.01,
         "n_referred": 150}
    )  # fmt: skip
    # released at the step of 150 people (0.01): two decimals, no "−0.000"
    assert effect_size(row) == "0.00 per person per month (95% CI −0.01 to 0.01)"
    row2 = row.drop("n_referred")
    assert effect_size(row2).startswith("0.000 per person")


def test_redacted_and_missing_cells_have_distinct_marks() -> None:
    df = pd.DataFrame({"outcome": ["gp", "ae"], "n": [150.0, float("nan")], "x": [1.5, None]})
    md = markdown_table(df, redacted=frozenset({(1, "n")}))
    assert f"| A&E attendances | {REDACTED} | {NOT_AVAILABLE} |" in md
    assert "withheld by disclosure control" in md and "does not apply" in md
    assert "–" not in md


def test_protocol_title_and_description_are_not_truncated(tmp_path: Path) -> None:
    b = write_example_bundle(tmp_path / "b", with_figures=False)
    title = "A title " + "that goes on " * 12 + "to the end"
    (b / "protocol.yaml").write_text(f"title: {title}\nname: x\n", encoding="utf-8")
    from spevidence.report.sections import ReportBundle

    text = Narrative(ReportBundle(b)).protocol()
    assert title in text and "…" not in text


def test_a_report_printing_another_manifest_hash_is_stale(tmp_path: Path) -> None:
    from spevidence.bundle.hashing import sha256_file

    b = write_example_bundle(tmp_path / "bundle", with_figures=False)
    report = tmp_path / "report.html"
    report.write_text("<p>manifest SHA-256 " + "0" * 64 + "</p>", encoding="utf-8")
    stamp = {
        "report.html": {
            "bundle_manifest_sha256": sha256_file(b / "manifest.json"),
            "sha256": sha256_file(report),
        }
    }
    (tmp_path / "report_stamp.json").write_text(json.dumps(stamp), encoding="utf-8")
    assert reports_not_from(b) == ["report.html: its title page prints another manifest's SHA-256"]
    report.write_text("<p>" + sha256_file(b / "manifest.json") + "</p>", encoding="utf-8")
    stamp["report.html"]["sha256"] = sha256_file(report)
    (tmp_path / "report_stamp.json").write_text(json.dumps(stamp), encoding="utf-8")
    assert reports_not_from(b) == []


@pytest.mark.parametrize(
    ("naive", "did", "want"),
    [
        # a rise larger than the effect: the before-and-after makes the service look worse
        (27.5, 2.0, "is 25.5 percentage points above the matched estimate"),
        # a fall smaller than the effect's fall: worse too
        (-4.4, -20.5, "is 16.1 percentage points above the matched estimate"),
        # a fall larger than the effect's: better (regression to the mean credited)
        (-26.3, -12.0, "is 14.3 percentage points below the matched estimate"),
    ],
)
def test_regression_to_the_mean_contrast_in_words(naive: float, did: float, want: str) -> None:
    from spevidence.report.narrative.matched import _contrast_words

    text = _contrast_words({"outcome": "ae", "naive": naive, "did": did})
    assert want in text
    assert ("look better" in text) == (naive < did)
    assert "understates" not in text and "overstates" not in text
