"""Integration with the synthetic ICB generator (spevidence.synthetic, issue 4): every
injected defect is found and counted as the generator's truth.json says, and the panel
built from clean synthetic extracts equals an independent pandas computation.

Runs once the generator is on the same branch (it is developed in parallel)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest_link import reference_panel

import spevidence.synthetic as synthetic
from spevidence.data import read_extracts, validate
from spevidence.identity import Key
from spevidence.link import build_panel

KEY = Key(b"synthetic-test-key-0123456789abcdef")


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    from spevidence.synthetic._scenario import Defects

    sc = synthetic.load_scenario("demo")
    d = Defects(
        invalid_nhs_number=0.02,
        duplicate_events=0.02,
        events_after_death=0.5,
        events_outside_registration=0.3,
        referrals_not_in_population=0.05,
        mixed_date_formats=0.05,
        unparseable_dates=0.01,
        negative_length_of_stay=0.05,
    )
    out = tmp_path_factory.mktemp("syn-defects")
    res = synthetic.generate(
        sc.model_copy(update={"defects": d}), persons=800, seed=7, out=out, format="csv"
    )
    truth = json.loads((out / "truth.json").read_text())["defects"]
    w = sc.window
    ex = read_extracts(out)
    # defects at these rates lose far more than 5 % of some tables: allowed, to count them
    clean, qa, att = validate(
        ex, start=w.start, end=w.end, ids="nhs_number", key=KEY, max_row_loss=1.0
    )
    return res, truth, ex, clean, qa, att


def _n(qa, rule, table):
    return sum(i.rows for i in qa.by_rule(rule, table))


def test_each_injected_defect_is_found(defects):
    _, truth, _, _, qa, att = defects
    assert att.reconciles()
    assert _n(qa, "invalid_nhs_number", "population") == truth["invalid_nhs_number"]["persons"]
    assert _n(qa, "not_in_population", "referrals") == truth["referrals_not_in_population"]["rows"]
    for table in ("referrals", "gp_appointments", "ae_attendances", "admissions"):
        assert _n(qa, "mixed_date_formats", table) == truth["mixed_date_formats"][f"{table}_rows"]
    # rows can carry two defects; each row is excluded once, for its first failing check
    # (invalid NHS number and unreadable dates come first), so counts are at most injected
    pairs = [
        ("negative_length_of_stay", "admissions", truth["negative_length_of_stay"]["rows"]),
        ("after_death", "gp_appointments", truth["events_after_death"]["rows"]),
        ("outside_registration", "gp_appointments", truth["events_outside_registration"]["rows"]),
        ("unreadable_value", "gp_appointments", truth["unparseable_dates"]["gp_appointments_rows"]),
    ]
    for rule, table, injected in pairs:
        found = _n(qa, rule, table)
        invalid_rows = _n(qa, "invalid_nhs_number", table)
        assert injected - invalid_rows - 2 <= found <= injected, (rule, found, injected)
        assert found > 0
    dup = _n(qa, "duplicate_row", "gp_appointments")
    assert dup >= truth["duplicate_events"]["gp_appointments_rows"] - _n(
        qa, "invalid_nhs_number", "gp_appointments"
    )


def test_no_identifier_leaks_from_defective_extracts(defects):
    res, _, ex, clean, qa, att = defects
    ids = (
        set(pq.read_table(res.out / "population.parquet").column("person_id").to_pylist())
        if (res.out / "population.parquet").exists()
        else set(pd.read_csv(res.out / "population.csv", dtype=str)["person_id"])
    )
    text = qa.summary() + att.summary() + repr(ex) + repr(clean)
    assert not any(i in text for i in ids)
    assert not re.search(r"\b\d{10}\b", text)
    panel = build_panel(clean, start=clean.study_window[0], end=clean.study_window[1])
    sample = panel.table.limit(50).to_pyarrow().column("person_id").to_pylist()
    assert all(re.fullmatch(r"[0-9a-f]{64}", p) for p in sample)


def test_clean_synthetic_panel_equals_independent_computation(tmp_path):
    sc = synthetic.load_scenario("demo")
    synthetic.generate(sc, persons=150, seed=2, out=tmp_path, identifiers="pseudonym")
    start, end = sc.window.start, sc.window.end
    tables = {
        n: pq.read_table(tmp_path / f"{n}.parquet").to_pandas()
        for n in ("population", "referrals", "gp_appointments", "ae_attendances", "admissions")
    }
    for df in tables.values():
        for c in df.columns:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    clean, _, att = validate(read_extracts(tmp_path), start=start, end=end)
    assert att.reconciles()
    got = build_panel(clean, start=start, end=end).to_pandas()
    exp = reference_panel(tables, start, end)
    pd.testing.assert_frame_equal(got, exp)
    assert got["gp"].sum() > 100
    assert got["person_id"].nunique() > 100
