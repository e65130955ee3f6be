"""All outputs together: no person identifiers in any table; the `activity` command."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from conftest_activity import gp_appointments, population, referrals, wellbeing
from typer.testing import CliRunner

from spevidence.activity import EquityOfAccess, RiskScore, ServiceActivity
from spevidence.activity.catalogue import FIGURES, TABLES
from spevidence.activity.equity import registered_at
from spevidence.activity.outputs import activity_outputs, read_activity_extracts
from spevidence.cli import app
from spevidence.errors import DataError
from spevidence.wellbeing import PairedChange

# ten digits not inside a longer number or a decimal (as in spevidence.bundle's scan)
NHS_SHAPED = re.compile(r"(?<![0-9A-Za-z.+/])\d{10}(?![0-9A-Za-z]|\.\d)")
TOKEN_SHAPED = re.compile(r"[0-9a-f]{32,}")


def _extracts(ids: str) -> dict[str, pd.DataFrame]:
    pop = population(300, seed=41, ids=ids)
    ref = referrals(pop, m=220, seed=42)
    return {
        "population": pop,
        "referrals": ref,
        "gp_appointments": gp_appointments(pop, k=3000, seed=43),
        "wellbeing": wellbeing(ref, seed=44),
    }


@pytest.fixture(scope="module", params=["pseudonym", "nhs"])
def full(request):
    ex = _extracts(request.param)
    tables, figures = activity_outputs(
        ex["population"],
        ex["referrals"],
        gp_appointments=ex["gp_appointments"],
        wellbeing=ex["wellbeing"],
        start="2023-01-01",
        end="2023-12-31",
        at="2023-01-01",
        wellby=True,
        draw_figures=False,
    )
    return ex, tables, figures


def test_no_person_identifier_in_any_output_table(full):
    ex, tables, figures = full
    assert figures == {}
    expected = {
        "activity_referrals_by_period",
        "activity_referrals_by_pcn_period",
        "activity_referrals_by_practice",
        "activity_outcomes",
        "activity_time_to_contact",
        "activity_time_to_contact_bands",
        "activity_contacts",
        "activity_contacts_bands",
        "activity_support_duration",
        "activity_caseload",
        "activity_coding_audit",
        "activity_codes_outside_codelist",
        "activity_exclusions",
        "equity_overall",
        "equity_by_group",
        "equity_practice_funnel",
        "equity_funnel_limits",
        "equity_exclusions",
        "casefinding_by_pcn",
        "casefinding_factors",
        "casefinding_score_distribution",
        "casefinding_exclusions",
        "wellbeing_paired_change",
        "wellbeing_followup_pattern",
        "wellbeing_followup_by_group",
        "wellbeing_baseline_by_followup",
        "wellbeing_wellby",
        "wellbeing_exclusions",
    }
    assert set(tables) == expected
    person_ids = set(ex["population"]["person_id"]) | set(ex["referrals"]["person_id"])
    for name, df in tables.items():
        assert "person_id" not in df.columns, name
        text = df.to_csv(index=False)
        assert not any(p in text for p in person_ids), name
        assert not NHS_SHAPED.search(text), name
        assert not TOKEN_SHAPED.search(text), name


def test_control_is_applied_before_figures():
    ex = _extracts("pseudonym")
    seen: list[str] = []

    def control(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        seen.extend(tables)
        out = {k: v.copy() for k, v in tables.items()}
        out["activity_contacts_bands"]["referrals"] = 5
        return out

    tables, figures = activity_outputs(
        ex["population"], ex["referrals"], start="2023-01-01", end="2023-12-31", control=control
    )
    assert "activity_outcomes" in seen
    assert (tables["activity_contacts_bands"]["referrals"] == 5).all()
    heights = [p.get_height() for p in figures["activity_contacts"].axes[0].patches]
    assert heights == [5] * len(heights)
    assert "casefinding_by_pcn" not in tables  # no GP appointments given
    assert "wellbeing_paired_change" not in tables


def test_cli_activity(tmp_path):
    ex = _extracts("pseudonym")
    data = tmp_path / "data"
    data.mkdir()
    ex["population"].to_parquet(data / "population.parquet")
    ex["referrals"].astype({"referral_date": "datetime64[ns]"}).to_parquet(
        data / "referrals.parquet"
    )
    ex["wellbeing"].to_csv(data / "wellbeing.csv", index=False)
    back = read_activity_extracts(data)
    assert set(back) == {"population", "referrals", "wellbeing"}
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "activity",
            "--data",
            str(data),
            "--out",
            str(out),
            "--start",
            "2023-01-01",
            "--wte",
            "0.5",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (out / "tables" / "activity_outcomes.csv").is_file()
    wb = pd.read_csv(out / "tables" / "wellbeing_paired_change.csv")
    assert set(wb["instrument"]) == {"wemwbs", "ons4_life_satisfaction"}  # those present
    assert not (out / "tables" / "wellbeing_wellby.csv").exists()  # --wellby not given
    assert (pd.read_csv(out / "tables" / "activity_caseload.csv")["wte"] == 0.5).all()
    # disclosure control is on by default: a log, and redactions marked in the CSVs
    log = pd.read_csv(out / "disclosure_log.csv")
    assert log["action"].str.startswith("redacted").any()
    assert "[REDACTED]" in (out / "tables" / "activity_referrals_by_period.csv").read_text()
    assert len(list((out / "figures").glob("*.png"))) >= 10
    person_ids = set(ex["population"]["person_id"])
    for f in (out / "tables").glob("*.csv"):
        text = f.read_text()
        assert not any(p in text for p in person_ids), f.name
        assert not TOKEN_SHAPED.search(text), f.name
    bad = CliRunner().invoke(app, ["activity", "--data", str(tmp_path / "nope")])
    assert isinstance(bad.exception, DataError)
    assert "not found" in str(bad.exception)


def test_read_activity_extracts_requires_referrals(tmp_path):
    population(10).to_csv(tmp_path / "population.csv", index=False)
    with pytest.raises(DataError, match="referrals"):
        read_activity_extracts(Path(tmp_path))


def test_catalogue_lists_every_table_and_its_count_columns(full):
    _, tables, _ = full
    not_counts = {"norm_low", "norm_high", "price_year", "window_days"}
    for name, df in tables.items():
        info = TABLES[name]
        assert info.description, name
        for col in info.counts:
            assert col in df.columns, (name, col)
            assert pd.api.types.is_integer_dtype(df[col]), (name, col)
        for col in info.derived:
            assert col in df.columns, (name, col)
        for col in df.columns:
            if pd.api.types.is_integer_dtype(df[col]) and not pd.api.types.is_bool_dtype(df[col]):
                assert col in info.counts or col in not_counts, (name, col)
    assert set(FIGURES) == {
        n
        for cls in (ServiceActivity, EquityOfAccess, RiskScore, PairedChange)
        for n in cls._PLOTTERS
    }


def test_row_order_does_not_change_any_table(full):
    ex, tables, _ = full
    shuffled = {k: v.sample(frac=1.0, random_state=3).reset_index(drop=True) for k, v in ex.items()}
    again, _ = activity_outputs(
        shuffled["population"],
        shuffled["referrals"],
        gp_appointments=shuffled["gp_appointments"],
        wellbeing=shuffled["wellbeing"],
        start="2023-01-01",
        end="2023-12-31",
        at="2023-01-01",
        wellby=True,
        draw_figures=False,
    )
    assert again.keys() == tables.keys()
    for name in tables:
        pd.testing.assert_frame_equal(again[name], tables[name], obj=name)


def test_case_finding_look_back_lies_inside_the_window():
    # an extract that starts at the window start, as after validation: the frequent
    # attenders' year of GP use is only there a full look-back after the start
    ex = _extracts("pseudonym")
    gp = ex["gp_appointments"].copy()
    gp["appointment_date"] = pd.Timestamp("2023-01-01") + pd.to_timedelta(
        (gp["appointment_date"] - pd.Timestamp("2022-01-01")).dt.days % 365, "D"
    )
    kw = dict(start="2023-01-01", end="2024-06-30", draw_figures=False)
    tables, _ = activity_outputs(ex["population"], ex["referrals"], gp_appointments=gp, **kw)
    fac = tables["casefinding_factors"].set_index("factor")
    # expected: attended in the year (2023-01-01, 2024-01-01], registered on 2024-01-01
    seen = gp.loc[(gp["status"] == "attended") & (gp["appointment_date"] > "2023-01-01")]
    counts = seen["person_id"].value_counts()
    on = set(registered_at(ex["population"], pd.Timestamp("2024-01-01"))[0]["person_id"])
    expected = int((counts[counts.index.isin(on)] > 15).sum())
    assert fac.loc["Frequent GP attender", "people"] == expected > 30
    assert (fac["scored_on"] == "2024-01-01").all()
    assert fac.loc["Frequent GP attender", "note"] == ""
    by_pcn = tables["casefinding_by_pcn"]
    assert (by_pcn["gp_lookback_from"] == "2023-01-02").all()
    # scored at the start (the old default), the look-back is empty and says so
    early, _ = activity_outputs(
        ex["population"], ex["referrals"], gp_appointments=gp, risk_at="2023-01-01", **kw
    )
    fac0 = early["casefinding_factors"].set_index("factor")
    assert fac0.loc["Frequent GP attender", "people"] == 0
    assert fac0.loc["Frequent GP attender", "note"].startswith("incomplete")
