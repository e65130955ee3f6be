"""spevidence.match.risk_set: eligibility rules, sequential use of comparators,
attrition reasons, contract of the matched data, balance and pre-trends."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from match_synth import make_panel

from spevidence.errors import DataError, EstimationError
from spevidence.match import risk_set
from spevidence.match.risk_set import (
    REASON_CALIPER,
    REASON_LOOKBACK,
    REASON_NO_STRATUM,
    REASON_USED,
)

N_T = 30
PERIODS = pd.date_range("2022-01-01", periods=N_T, freq="MS")


def _person(pid, *, start=0, end=N_T - 1, ref=None, pcn="U1", sex="F", yob=1960, imd=5, gp=1):
    ts = np.arange(start, end + 1)
    gp_arr = np.broadcast_to(np.asarray(gp, dtype=int), (N_T,))[ts] if np.ndim(gp) else gp
    return pd.DataFrame(
        {
            "person_id": pid,
            "period": PERIODS[ts].date,
            "t": ts,
            "gp": gp_arr,
            "ae": 0,
            "admissions": 0,
            "exposure_days": 30,
            "practice_code": pcn + "-A",
            "pcn_code": pcn,
            "sex": sex,
            "year_of_birth": yob,
            "imd_decile": imd,
            "referral_date": PERIODS[ref].date() if ref is not None else None,
            "referral_t": pd.array([ref] * len(ts), dtype="Int64"),
        }
    )


def _panel(*people):
    return pd.concat(people, ignore_index=True)


def _rs(panel, **kw):
    kw.setdefault("covariates", ["prior_gp"])
    kw.setdefault("caliper", None)
    kw.setdefault("lookback", 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return risk_set(panel, **kw)


def _gp(level, bump_from=None, bump=0):
    g = np.full(N_T, level)
    if bump_from is not None:
        g[bump_from:] += bump
    return g


def test_eligible_comparators_at_index():
    panel = _panel(
        _person("A", ref=13, gp=2),
        _person("B", gp=1),  # never referred: comparator
        _person("C", ref=20, gp=2),  # referred later: comparator only if not-yet-referred
        _person("D", ref=5, gp=2),  # referred earlier: never a comparator at 13
        _person("E", start=5, gp=2),  # registered < 12 months before 13
        _person("F", pcn="U2", gp=2),  # other PCN: in the pool, other stratum
        _person("G", end=12, gp=2),  # left before the index period
    )
    rs = _rs(panel)
    at13 = rs.pool.loc[rs.pool["index_t"] == 13]
    assert sorted(at13["person_id"]) == ["A", "B", "C", "F"]
    assert at13.set_index("person_id")["treated"].to_dict() == {"A": 1, "B": 0, "C": 0, "F": 0}
    # C has A's exact prior use, B does not: not-yet-referred picks C; at C's own
    # referral (t=20) C is a case, and E (registered since t=5) is now eligible
    assert rs.pairs[["case_person_id", "comparator_person_id", "index_t"]].values.tolist() == [
        ["A", "C", 13],
        ["C", "E", 20],
    ]
    never = _rs(panel, comparators="never-referred")
    assert sorted(never.pool.loc[never.pool["index_t"] == 13, "person_id"]) == ["A", "B", "F"]
    assert never.pairs["comparator_person_id"].tolist()[0] == "B"
    att = rs.attrition.set_index("reason")["n"]
    assert att[REASON_LOOKBACK] == 1  # D, referred at 5
    assert rs.attrition.iloc[0]["n"] == 3  # A, C, D were referred


def test_prior_use_and_age_are_measured_before_the_index():
    gp = np.arange(N_T) % 4  # 0,1,2,3,0,...
    panel = _panel(_person("A", ref=15, gp=gp, yob=1950), _person("B", gp=gp, yob=1951))
    rs = _rs(panel, covariates=["prior_gp", "recent_gp", "age"], exact=("pcn_code", "sex"))
    a = rs.pool.set_index("person_id").loc["A"]
    assert a["prior_gp"] == gp[3:15].sum()  # t = 3..14
    assert a["recent_gp"] == gp[12:15].sum()  # t = 12..14
    assert a["age"] == PERIODS[15].year - 1950
    assert rs.pairs["comparator_person_id"].tolist() == ["B"]


def test_comparator_used_once_without_replacement():
    panel = _panel(
        _person("A", ref=13, gp=2),
        _person("H", ref=14, gp=2),
        _person("B", gp=2),
    )
    rs = _rs(panel)
    assert rs.pairs[["case_person_id", "comparator_person_id"]].values.tolist() == [["A", "B"]]
    assert rs.attrition.set_index("reason")["n"][REASON_USED] == 1
    rep = _rs(panel, replace=True)
    assert rep.pairs[["case_person_id", "comparator_person_id", "index_t"]].values.tolist() == [
        ["A", "B", 13],
        ["H", "B", 14],
    ]
    md = rep.matched_data()
    # B appears twice, as two comparator units with different pseudo index dates
    b = md.loc[md["person_id"] == "B"]
    assert sorted(b.groupby("unit_id")["index_t"].first()) == [13, 14]


def test_comparator_later_referred_is_censored_and_counted():
    panel = _panel(
        _person("A", ref=13, gp=_gp(1, 13, 3)),
        _person("C", ref=20, gp=_gp(1, 20, 3)),
        _person("B", gp=_gp(2)),
        _person("K", gp=_gp(5)),
    )
    rs = _rs(panel)
    pairs = rs.pairs.set_index("case_person_id")["comparator_person_id"].to_dict()
    assert pairs == {"A": "C", "C": "B"}
    d = rs.diagnostics
    assert d["comparators_later_referred"] == 1
    assert d["comparators_later_matched_as_cases"] == 1
    assert d["comparator_rows_censored_at_own_referral"] == N_T - 20
    md = rs.matched_data()
    c_as_comp = md.loc[(md["person_id"] == "C") & (md["treated"] == 0)]
    c_as_case = md.loc[(md["person_id"] == "C") & (md["treated"] == 1)]
    assert c_as_comp["t"].max() == 19 and (c_as_comp["index_t"] == 13).all()
    assert c_as_case["t"].max() == N_T - 1 and (c_as_case["index_t"] == 20).all()
    assert c_as_comp["unit_id"].iloc[0] != c_as_case["unit_id"].iloc[0]


def test_attrition_reasons_and_reconciliation():
    panel = _panel(
        _person("A", ref=13, gp=2),
        _person("B", gp=2),
        _person("Z", ref=14, pcn="U9", gp=2),  # alone in its PCN
        _person("Y", ref=3, gp=2),  # too early for a 12-month look-back
        _person("W", ref=15, gp=9),  # far from every comparator
        _person("V", gp=1),
    )
    rs = _rs(panel, caliper=0.05)
    att = rs.attrition.set_index("reason")["n"]
    assert att[REASON_NO_STRATUM] == 1
    assert att[REASON_LOOKBACK] == 1
    assert att[REASON_CALIPER] == 1
    n_in = rs.attrition.iloc[0]["n"]
    dropped = rs.attrition.loc[rs.attrition["step"] == "dropped", "n"].sum()
    matched = rs.attrition.iloc[-1]["n"]
    assert n_in == 4 and matched == 1 and n_in == matched + dropped
    assert (rs.pairs["distance_diff"] <= rs.caliper).all()


def test_attrition_reconciles_on_synthetic_panel():
    panel = make_panel(n_people=1200, n_periods=30, seed=5)
    rs = _rs(panel, caliper=0.01, covariates=None, lookback=6)
    a = rs.attrition
    assert a.iloc[0]["n"] == panel.loc[panel["referral_t"].notna(), "person_id"].nunique()
    assert a.iloc[0]["n"] == a.iloc[-1]["n"] + a.loc[a["step"] == "dropped", "n"].sum()
    assert (
        a.iloc[-1]["n"] == rs.units["subclass"].nunique() == rs.glance().iloc[0]["n_matched_cases"]
    )
    assert a.set_index("reason")["n"][REASON_CALIPER] > 0


def test_deterministic_and_invariant_to_row_order():
    panel = make_panel(n_people=800, n_periods=24, seed=9)
    a = _rs(panel, lookback=6, caliper=0.2, covariates=None, order="random", seed=4)
    b = _rs(panel, lookback=6, caliper=0.2, covariates=None, order="random", seed=4)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    pd.testing.assert_frame_equal(a.matched_data(), b.matched_data())
    shuffled = panel.sample(frac=1.0, random_state=3).reset_index(drop=True)
    c = _rs(shuffled, lookback=6, caliper=0.2, covariates=None)
    d = _rs(panel, lookback=6, caliper=0.2, covariates=None)
    pd.testing.assert_frame_equal(c.pairs, d.pairs)


def test_matched_data_contract():
    panel = make_panel(n_people=800, n_periods=24, seed=2)
    rs = _rs(panel, lookback=6, caliper=0.2, covariates=None, ratio=2)
    md = rs.matched_data()
    for col in panel.columns:
        assert col in md.columns
    assert np.array_equal(md["event_time"], md["t"] - md["index_t"])
    assert np.array_equal(md["post"], (md["event_time"] >= 0).astype(int))
    units = md.groupby("unit_id").agg(
        treated=("treated", "first"), subclass=("subclass", "first"), w=("weights", "first")
    )
    per_sub = units.groupby("subclass")["treated"].agg(["sum", "size"])
    assert (per_sub["sum"] == 1).all() and per_sub["size"].between(2, 3).all()
    # MatchIt weights: case 1; comparators 1/k per set, rescaled to mean 1
    assert (units.loc[units["treated"] == 1, "w"] == 1).all()
    assert units.loc[units["treated"] == 0, "w"].mean() == pytest.approx(1.0)
    # no comparator row at or after that comparator's own referral
    comp = md.loc[md["treated"] == 0]
    assert not (comp["referral_t"].notna() & (comp["t"] >= comp["referral_t"].fillna(10**6))).any()
    # each person is a comparator at most once without replacement
    assert comp.groupby("person_id")["unit_id"].nunique().max() == 1
    win = rs.matched_data(window=(-3, 2))
    assert win["event_time"].between(-3, 2).all()


def test_balance_and_parallel_pre_trends_on_synthetic():
    panel = make_panel(n_people=4000, n_periods=36, seed=1)
    rs = risk_set(panel, lookback=12, seed=0)
    bal = rs.balance(warn=False).table().set_index("variable")
    assert (bal["smd_after"].abs() < 0.1).all(), bal["smd_after"]
    assert bal.loc["recent_gp", "smd_before"] > 0.3  # referral at a peak of use
    md = rs.matched_data(window=(-12, -1))
    m = (
        md.groupby(["event_time", "treated"])
        .apply(lambda g: np.average(g["gp"], weights=g["weights"]))
        .unstack("treated")
    )
    diff = m[1] - m[0]
    # pre-referral trends: the case-comparator gap has no trend and no peak before
    # referral (naively, cases exceed everyone else by > 0.3 visits a month then)
    slope = np.polyfit(diff.index.to_numpy(float), diff.to_numpy(), 1)[0]
    assert abs(slope) < 0.01
    assert abs(diff.loc[-3:-1].mean()) < 0.1
    pool = rs.pool
    naive = pool.groupby("treated")["recent_gp"].mean()
    assert (naive[1] - naive[0]) / 3 > 0.3


def test_input_errors():
    panel = _panel(_person("A", ref=13), _person("B"))
    with pytest.raises(DataError, match="missing column"):
        risk_set(panel.drop(columns=["gp"]))
    with pytest.raises(DataError, match="duplicated"):
        risk_set(pd.concat([panel, panel.iloc[:1]]))
    with pytest.raises(DataError, match="recent"):
        risk_set(panel, lookback=2, recent=3)
    with pytest.raises(DataError, match="comparators"):
        risk_set(panel, comparators="everyone")  # type: ignore[arg-type]
    with pytest.raises(EstimationError):
        _rs(_panel(_person("A", ref=3), _person("B")))
