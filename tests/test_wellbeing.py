"""Paired wellbeing change: explicit data, scipy paired t, follow-up pattern, WELLBY."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest_activity import pid, population, referrals, wellbeing
from scipy import stats

from spevidence.errors import DataError
from spevidence.wellbeing import WELLBY_CAVEAT, paired_change


def _explicit() -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [pid(i) for i in range(6)]
    ref = pd.DataFrame(
        {
            "person_id": [*ids, ids[0]],
            "referral_date": ["2024-01-10"] * 6 + ["2024-05-01"],
            "referral_source": ["gp", "gp", "self", "self", "gp", "gp", "gp"],
            "outcome": ["accepted"] * 5 + ["declined", "accepted"],
        }
    )
    rows = [
        # person 0: two baselines (closest to referral is used), two follow-ups (last used)
        (ids[0], "2023-11-01", "wemwbs", 30.0),  # 70 days before
        (ids[0], "2024-01-05", "wemwbs", 40.0),  # 5 days before -> baseline
        (ids[0], "2024-04-01", "wemwbs", 41.0),  # first follow-up
        (ids[0], "2024-07-01", "wemwbs", 46.0),  # last follow-up -> change +6
        (ids[1], "2024-01-10", "wemwbs", 50.0),
        (ids[1], "2024-05-01", "wemwbs", 48.0),  # change -2
        (ids[2], "2024-01-20", "wemwbs", 35.0),
        (ids[2], "2024-06-01", "wemwbs", 38.0),  # change +3 (meaningful, >= 3)
        (ids[3], "2024-01-12", "wemwbs", 44.0),  # baseline only
        (ids[4], "2024-05-01", "wemwbs", 52.0),  # follow-up only
        (ids[5], "2024-01-10", "wemwbs", 20.0),  # declined: not analysed
        (ids[1], "2024-01-11", "wemwbs", 99.0),  # out of range: dropped
        (ids[1], "2024-02-20", "wemwbs", 45.0),  # between windows: not used
        (ids[0], "2024-01-10", "ons4_anxiety", 8.0),
        (ids[0], "2024-06-01", "ons4_anxiety", 5.0),  # anxiety down 3 = improved
        (ids[1], "2024-01-10", "ons4_anxiety", 3.0),
        (ids[1], "2024-06-01", "ons4_anxiety", 4.0),  # up 1 = worsened (threshold 1)
    ]
    wb = pd.DataFrame(rows, columns=["person_id", "measured_date", "instrument", "score"])
    return wb, ref


def test_paired_change_explicit():
    wb, ref = _explicit()
    r = paired_change(wb, ref, instruments=("wemwbs", "ons4_anxiety"))
    t = r.tables()["wellbeing_paired_change"].set_index("instrument")
    w = t.loc["wemwbs"]
    changes = np.array([6.0, -2.0, 3.0])
    assert w["people"] == 3
    assert w["baseline_mean"] == pytest.approx(np.mean([40, 50, 35]))
    assert w["mean_change"] == pytest.approx(changes.mean())
    assert w["sd_change"] == pytest.approx(changes.std(ddof=1))
    tt = stats.ttest_rel([46.0, 48.0, 38.0], [40.0, 50.0, 35.0])
    ci = tt.confidence_interval(0.95)
    assert w["conf_low"] == pytest.approx(ci.low) and w["conf_high"] == pytest.approx(ci.high)
    assert w["p_value"] == pytest.approx(tt.pvalue)
    assert w["improved"] == 2 and w["worsened"] == 0 and w["no_meaningful_change"] == 1
    a = t.loc["ons4_anxiety"]
    assert a["better"] == "lower" and a["mean_change"] == pytest.approx(-1.0)
    assert a["improved"] == 1 and a["worsened"] == 1
    # follow-up picked first instead of last
    r2 = paired_change(wb, ref, instruments=("wemwbs",), followup_pick="first")
    assert r2.tables()["wellbeing_paired_change"]["mean_change"].item() == pytest.approx(
        np.mean([1.0, -2.0, 3.0])
    )
    # a stricter threshold
    r3 = paired_change(wb, ref, instruments=("wemwbs",), meaningful={"wemwbs": 4})
    assert r3.tables()["wellbeing_paired_change"]["improved"].item() == 1


def test_followup_pattern_and_exclusions():
    wb, ref = _explicit()
    r = paired_change(wb, ref, instruments=("wemwbs", "ons4_anxiety"))
    p = r.tables()["wellbeing_followup_pattern"]
    w = p.loc[p["instrument"] == "wemwbs"].set_index("pattern")["people"]
    assert w.to_dict() == {
        "Baseline and follow-up": 3,
        "Baseline only": 1,
        "Follow-up only": 1,
        "Neither": 0,
    }
    assert (p["referred_people"] == 5).all()
    by = r.tables()["wellbeing_followup_by_group"]
    g = by.loc[by["instrument"] == "wemwbs"].set_index("group")
    assert g.loc["gp", "people"] == 2 and g.loc["gp", "with_followup"] == 2
    assert g.loc["self", "people"] == 2 and g.loc["self", "with_followup"] == 1
    bb = r.tables()["wellbeing_baseline_by_followup"]
    bw = bb.loc[bb["instrument"] == "wemwbs"].set_index("has_followup")
    assert bw.loc["No", "people"] == 1 and bw.loc["No", "baseline_mean"] == 44.0
    ex = r.tables()["wellbeing_exclusions"].set_index("reason")["rows"]
    assert ex["score outside the instrument's range"] == 1
    assert ex["outcome not accepted"] == 1
    assert ex["later accepted referral of the same person"] == 1
    assert ex["person has no accepted referral in the window"] == 1
    assert ex["measured outside the baseline and follow-up windows"] == 1
    assert ex["another measurement in the same window was used"] == 2
    # rows reconcile: every wellbeing row is used or dropped with a reason
    used = 2 * 3 + 1 + 1 + 2 * 2  # paired wemwbs, baseline-only, follow-up-only, anxiety
    exf = r.tables()["wellbeing_exclusions"]
    assert used + exf.loc[exf["table"] == "wellbeing", "rows"].sum() == len(wb)


def test_population_groups():
    wb, ref = _explicit()
    ids = [pid(i) for i in range(6)]
    pop = pd.DataFrame(
        {
            "person_id": ids,
            "sex": ["F", "M", "F", "M", "F", "M"],
            "year_of_birth": [1950, 1990, 1950, 1990, 1950, 1990],
            "imd_decile": [1, 2, 3, 4, 5, 6],
        }
    )
    r = paired_change(wb, ref, instruments=("wemwbs",), population=pop)
    by = r.tables()["wellbeing_followup_by_group"]
    sex = by.loc[by["characteristic"] == "Sex"].set_index("group")
    # with a baseline: persons 0 (F), 1 (M), 2 (F), 3 (M); follow-up: 0, 1, 2
    assert sex.loc["Female", "people"] == 2 and sex.loc["Female", "with_followup"] == 2
    assert sex.loc["Male", "people"] == 2 and sex.loc["Male", "with_followup"] == 1
    assert set(by["characteristic"]) == {"Referral source", "Sex", "Age band", "IMD quintile"}


def test_wellby_valuation():
    wb = pd.DataFrame(
        {
            "person_id": [pid(i) for i in range(4) for _ in range(2)],
            "measured_date": ["2024-01-01", "2024-06-01"] * 4,
            "instrument": "ons4_life_satisfaction",
            "score": [4, 6, 5, 5, 3, 4, 7, 8],
        }
    )
    ref = pd.DataFrame(
        {
            "person_id": [pid(i) for i in range(4)],
            "referral_date": "2024-01-01",
            "outcome": "accepted",
        }
    )
    r = paired_change(
        wb, ref, instruments=("ons4_life_satisfaction",), wellby=True, wellby_duration_years=0.5
    )
    w = r.tables()["wellbeing_wellby"].iloc[0]
    mean = np.mean([2, 0, 1, 1])
    assert w["wellbys"] == pytest.approx(mean * 4 * 0.5)
    assert w["value"] == pytest.approx(mean * 4 * 0.5 * 13_000)
    assert w["value_at_low_price"] == pytest.approx(mean * 2 * 10_000)
    assert w["value_at_high_price"] == pytest.approx(mean * 2 * 16_000)
    assert w["price_year"] == 2019 and w["caveat"] == WELLBY_CAVEAT
    assert "no comparison group" in w["caveat"]
    assert w["value_conf_low"] < w["value"] < w["value_conf_high"]
    with pytest.raises(DataError, match="life satisfaction"):
        paired_change(wb, ref, instruments=("wemwbs",), wellby=True)


def test_option_errors():
    wb, ref = _explicit()
    with pytest.raises(DataError, match="windows"):
        paired_change(wb, ref, baseline_window_days=(-30, 60), followup_window_days=(56, 365))
    with pytest.raises(DataError, match="unknown instrument"):
        paired_change(wb, ref, instruments=("phq9",))
    with pytest.raises(DataError, match="wellbeing"):
        paired_change(wb.drop(columns="score"), ref)


def test_seeded_data_against_pandas_and_no_ids():
    pop = population(300, seed=31)
    ref = referrals(pop, m=250, seed=32)
    wb = wellbeing(ref, seed=33)
    r = paired_change(wb, ref, instruments=("wemwbs",))
    # independent computation
    rr = ref.assign(d=pd.to_datetime(ref["referral_date"], errors="coerce"))
    rr = rr.loc[rr["d"].notna() & (rr["outcome"] == "accepted")].sort_values("d")
    idx = rr.groupby("person_id")["d"].min()
    w = wb.loc[wb["instrument"] == "wemwbs"].copy()
    w["days"] = (pd.to_datetime(w["measured_date"]) - w["person_id"].map(idx)).dt.days
    base = w.loc[w["days"].between(-90, 30)].assign(a=lambda x: x["days"].abs())
    base = base.sort_values(["person_id", "a", "days"]).groupby("person_id")["score"].first()
    fu = w.loc[w["days"].between(56, 365)].sort_values(["person_id", "days"])
    fu = fu.groupby("person_id")["score"].last()
    both = pd.concat([base.rename("b"), fu.rename("f")], axis=1).dropna()
    t = r.tables()["wellbeing_paired_change"].iloc[0]
    assert t["people"] == len(both)
    assert t["mean_change"] == pytest.approx((both["f"] - both["b"]).mean())
    assert t["improved"] == int(((both["f"] - both["b"]) >= 3).sum())
    ids = set(pop["person_id"])
    for name, df in r.tables().items():
        assert not df.astype(str).isin(ids).any().any(), name
    assert set(r.figures()) == {"wellbeing_paired_change", "wellbeing_followup_pattern"}
