"""Equity of access and funnel limits: checked against pandas, statsmodels and scipy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest_activity import pid, population, referrals
from scipy import stats
from statsmodels.stats.proportion import proportion_confint
from statsmodels.stats.rates import confint_poisson

from spevidence.activity import equity_of_access
from spevidence.activity._stats import funnel_limits, poisson_exact_interval, wilson_interval
from spevidence.errors import DataError

AT = "2023-01-01"


@pytest.fixture(scope="module")
def data():
    pop = population(500, seed=11)
    return pop, referrals(pop, m=350, seed=12)


@pytest.fixture(scope="module")
def result(data):
    pop, ref = data
    return equity_of_access(pop, ref, at=AT, start="2023-01-01", end="2023-12-31")


def _denominator(pop: pd.DataFrame) -> pd.DataFrame:
    at = pd.Timestamp(AT)
    rs = pd.to_datetime(pop["registration_start"])
    re_ = pd.to_datetime(pop["registration_end"])
    dd = pd.to_datetime(pop["death_date"])
    ok = (rs <= at) & (re_.isna() | (re_ >= at)) & (dd.isna() | (dd > at))
    return pop.loc[ok]


def _referred(ref: pd.DataFrame) -> pd.Series:
    d = pd.to_datetime(ref["referral_date"], errors="coerce")
    ok = d.between(pd.Timestamp("2023-01-01"), pd.Timestamp("2023-12-31")) & ref["outcome"].isin(
        ["accepted", "declined", "did_not_engage"]
    )
    return ref.loc[ok].groupby("person_id").size()


def test_overall_rate_and_denominator(data, result):
    pop, ref = data
    den = _denominator(pop)
    nref = _referred(ref)
    o = result.tables()["equity_overall"].iloc[0]
    assert o["registered"] == len(den)
    assert o["people"] == int(den["person_id"].isin(nref.index).sum())
    assert o["referrals"] == int(nref.reindex(den["person_id"]).fillna(0).sum())
    lo, hi = proportion_confint(o["people"], o["registered"], method="wilson")
    assert o["conf_low"] == pytest.approx(1000 * lo) and o["conf_high"] == pytest.approx(1000 * hi)
    ex = result.tables()["equity_exclusions"].set_index("reason")["rows"]
    assert ex["spell does not cover the date 'at'"] + ex["died on or before the date 'at'"] == (
        len(pop) - len(den)
    )


def test_rates_by_group_match_pandas(data, result):
    pop, ref = data
    den = _denominator(pop).copy()
    nref = _referred(ref)
    den["referred"] = den["person_id"].isin(nref.index)
    den["n_ref"] = nref.reindex(den["person_id"]).fillna(0).to_numpy()
    t = result.tables()["equity_by_group"]
    # sex
    sex = t.loc[t["characteristic"] == "Sex"].set_index("group")
    for code, label in (("F", "Female"), ("M", "Male")):
        g = den.loc[den["sex"] == code]
        assert sex.loc[label, "registered"] == len(g)
        assert sex.loc[label, "people"] == int(g["referred"].sum())
        assert sex.loc[label, "rate_per_1000"] == pytest.approx(1000 * g["referred"].mean())
        lo, hi = confint_poisson(g["n_ref"].sum(), len(g), method="exact-c")
        assert sex.loc[label, "referral_conf_low"] == pytest.approx(1000 * lo, rel=1e-9)
        assert sex.loc[label, "referral_conf_high"] == pytest.approx(1000 * hi, rel=1e-9)
    # IMD quintile from decile, with a "Not recorded" group
    imd = t.loc[t["characteristic"] == "IMD quintile"].set_index("group")
    q1 = den.loc[den["imd_decile"].isin([1, 2])]
    assert imd.loc["1 (most deprived)", "registered"] == len(q1)
    assert imd.loc["Not recorded", "registered"] == int(den["imd_decile"].isna().sum())
    # age band at 'at' (calendar year minus year of birth)
    age = 2023 - den["year_of_birth"]
    ab = t.loc[t["characteristic"] == "Age band"].set_index("group")
    assert ab.loc["65-74", "registered"] == int(age.between(65, 74).sum())
    assert ab.loc["85+", "people"] == int(den.loc[age >= 85, "referred"].sum())
    # ethnic group missing -> Not recorded; shares sum to 100 within a characteristic
    eth = t.loc[t["characteristic"] == "Ethnic group"].set_index("group")
    assert eth.loc["Not recorded", "registered"] == int(den["ethnicity_group"].isna().sum())
    for _, g in t.groupby("characteristic"):
        assert g["share_registered"].sum() == pytest.approx(100)
        assert g["registered"].sum() == len(den)
    rr = sex["share_referred"] / sex["share_registered"]
    np.testing.assert_allclose(sex["representation_ratio"], rr)


def test_need_columns(data):
    pop, ref = data
    den = _denominator(pop)
    need = set(den["person_id"].iloc[::3])
    r = equity_of_access(pop, ref, at=AT, start="2023-01-01", end="2023-12-31", need=need)
    t = r.tables()["equity_by_group"]
    nref = _referred(ref)
    sex = t.loc[t["characteristic"] == "Sex"].set_index("group")
    g = den.loc[den["sex"] == "F"]
    in_need = g["person_id"].isin(need)
    assert sex.loc["Female", "need"] == int(in_need.sum())
    assert sex.loc["Female", "need_referred"] == int(
        (in_need & g["person_id"].isin(nref.index)).sum()
    )
    np.testing.assert_allclose(
        sex["need_representation_ratio"], sex["share_referred"] / sex["share_need"]
    )
    # the same need as a boolean Series gives the same table
    s = pd.Series(den["person_id"].isin(need).to_numpy(), index=den["person_id"])
    r2 = equity_of_access(pop, ref, at=AT, start="2023-01-01", end="2023-12-31", need=s)
    pd.testing.assert_frame_equal(r.tables()["equity_by_group"], r2.tables()["equity_by_group"])


def test_practice_funnel_counts_and_flags(data, result):
    pop, ref = data
    den = _denominator(pop)
    nref = _referred(ref)
    f = result.tables()["equity_practice_funnel"].set_index("practice_code")
    for prac, g in den.groupby("practice_code"):
        assert f.loc[prac, "registered"] == len(g)
        assert f.loc[prac, "people"] == int(g["person_id"].isin(nref.index).sum())
    # an extreme practice is flagged above the 99.8% limit
    ids = [pid(90_000 + i) for i in range(200)]
    big = pd.DataFrame(
        {
            "person_id": ids,
            "practice_code": ["X"] * 100 + ["Y"] * 50 + ["Z"] * 50,
            "pcn_code": "U9",
            "registration_start": "2010-01-01",
        }
    )
    refs = pd.DataFrame(
        {
            "person_id": ids[:40] + ids[100:105] + ids[150:155],
            "referral_date": "2023-03-01",
            "outcome": "accepted",
        }
    )
    t = equity_of_access(big, refs, at=AT, by=()).tables()["equity_practice_funnel"]
    flags = t.set_index("practice_code")["funnel_flag"]
    assert flags["X"] == "above 99.8%"
    assert flags["Y"] in ("below 95%", "below 99.8%")
    lim = equity_of_access(big, refs, at=AT, by=()).tables()["equity_funnel_limits"]
    assert lim["target_per_1000"].iloc[0] == pytest.approx(1000 * 50 / 200)
    assert (lim["lower_998"] <= lim["lower_95"]).all() and (
        lim["upper_95"] <= lim["upper_998"]
    ).all()


@pytest.mark.parametrize("level", [0.95, 0.998])
@pytest.mark.parametrize("target", [0.02, 0.07, 0.3])
def test_funnel_limits_are_exact_binomial_quantiles(level, target):
    n = np.array([20, 57, 150, 600, 2400, 9000])
    lo, hi = funnel_limits(target, n, level=level)
    p_hi, p_lo = 1 - (1 - level) / 2, (1 - level) / 2
    r_hi = np.ceil(n * hi - 1e-9)
    # the upper limit lies in (r-1, r] where r is the p_hi binomial quantile
    assert np.all(stats.binom.cdf(r_hi, n, target) >= p_hi)
    assert np.all(stats.binom.cdf(r_hi - 1, n, target) < p_hi)
    r_lo = np.ceil(n * lo - 1e-9)
    ok = lo > 0
    assert np.all(stats.binom.cdf(r_lo[ok], n[ok], target) >= p_lo)
    assert np.all(stats.binom.cdf(r_lo[ok] - 1, n[ok], target) < p_lo)
    # for large n the limits approach the normal approximation
    z = stats.norm.ppf(p_hi)
    se = np.sqrt(target * (1 - target) / n[-1])
    assert hi[-1] == pytest.approx(target + z * se, abs=0.15 * z * se)
    assert lo[-1] == pytest.approx(target - z * se, abs=0.15 * z * se)


def test_interval_helpers_against_statsmodels():
    k = np.array([0, 1, 5, 37, 200])
    n = np.array([10, 10, 80, 400, 200])
    lo, hi = wilson_interval(k, n)
    for i in range(len(k)):
        a, b = proportion_confint(k[i], n[i], method="wilson")
        assert lo[i] == pytest.approx(a, abs=1e-12) and hi[i] == pytest.approx(b, abs=1e-12)
        a, b = confint_poisson(k[i], 1.0, method="exact-c")
        pl, ph = poisson_exact_interval(k[i])
        assert float(pl) == pytest.approx(a, abs=1e-10) and float(ph) == pytest.approx(b, rel=1e-10)


def test_errors_and_skips(data):
    pop, ref = data
    with pytest.raises(DataError, match="nobody registered"):
        equity_of_access(pop, ref, at="1990-01-01")
    r = equity_of_access(pop.drop(columns="ethnicity_group"), ref, at=AT)
    assert r.settings["skipped_characteristics"] == ("ethnicity_group",)
    assert "Ethnic group" not in set(r.tables()["equity_by_group"]["characteristic"])
    with pytest.raises(DataError, match="registration_start"):
        equity_of_access(pop.drop(columns="registration_start"), ref, at=AT)


def test_figures(result):
    figs = result.figures()
    assert set(figs) == {"equity_rates", "equity_funnel"}
    assert "funnel" in figs["equity_funnel"].axes[0].get_title()
