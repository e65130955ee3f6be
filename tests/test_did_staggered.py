"""Callaway-Sant'Anna (``spevidence.did.staggered``) against its peers.

Gold standard: R ``did`` as ported by ``moderndid`` 0.2 (golden files made by
``tests/golden/staggered_make_golden.py`` on the public ``mpdta`` data shipped
with moderndid) and, live, by ``csdid``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spevidence.did._staggered import ATTgt, staggered
from spevidence.errors import DataError, EstimationError

GOLDEN = Path(__file__).parent / "golden"
COMBOS = list(
    itertools.product(
        ["never", "notyet"], ["dr", "ipw", "reg"], ["varying", "universal"], ["", "~lpop"]
    )
)
MPDTA = {"yname": "lemp", "idname": "countyreal", "tname": "year", "gname": "first.treat"}


@pytest.fixture(scope="module")
def mpdta() -> pd.DataFrame:
    """The public mpdta panel as shipped inside moderndid (read without importing it)."""
    spec = importlib.util.find_spec("moderndid")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "core" / "datasets" / "mpdta_long.pkl.gz"
    return pd.read_pickle(path)


@pytest.fixture(scope="module")
def golden() -> tuple[pd.DataFrame, pd.DataFrame]:
    att = pd.read_csv(GOLDEN / "staggered_mpdta_attgt.csv").fillna({"xformla": ""})
    agg = pd.read_csv(GOLDEN / "staggered_mpdta_aggte.csv").fillna({"xformla": ""})
    return att, agg


def sim_panel(n: int = 400, T: int = 8, seed: int = 1, never_share: float = 0.3) -> pd.DataFrame:
    """Small staggered panel: cohorts 3..T-1 and never treated, dynamic effects, covariate."""
    rng = np.random.default_rng(seed)
    cohorts = np.array([0, 3, 4, 6, T + 5])  # T+5: treated after the window = never
    p = np.array([never_share, 0.25, 0.2, 0.15, 0.1])
    g = rng.choice(cohorts, size=n, p=p / p.sum())
    x = rng.normal(size=n)
    alpha = rng.normal(size=n) + 0.5 * x
    rows = []
    for t in range(1, T + 1):
        e = np.where((g > 0) & (t >= g), t - g + 1, 0)
        y = alpha + 0.1 * t + 0.2 * x * t / T + 0.3 * e + rng.normal(scale=0.5, size=n)
        rows.append(pd.DataFrame({"id": np.arange(n), "t": t, "g": g, "y": y, "x": x}))
    df = pd.concat(rows, ignore_index=True)
    df["w"] = 0.5 + (df["id"] % 7) / 7.0
    df["practice"] = (df["id"] // 9).astype(str)
    return df


# ------------------------------------------------------------------ golden: R did / moderndid


@pytest.mark.parametrize(("control", "method", "base", "xf"), COMBOS)
def test_mpdta_matches_r_did_golden(mpdta, golden, control, method, base, xf) -> None:
    gatt, gagg = golden
    r = staggered(
        mpdta, **MPDTA, xformla=xf or None, control=control, method=method, base_period=base
    )
    sel = (
        (gatt.control == control)
        & (gatt.method == method)
        & (gatt.base_period == base)
        & (gatt.xformla == xf)
    )
    ref = gatt[sel]
    ours = pd.DataFrame(
        {"group": r.groups.astype(int), "time": r.times.astype(int), "a": r.att, "s": r.se}
    )
    j = ref.merge(ours, on=["group", "time"], how="outer", indicator=True)
    assert (j["_merge"] == "both").all()
    np.testing.assert_allclose(j["a"], j["att"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(j["s"].fillna(0), j["se"].fillna(0), rtol=0, atol=1e-9)
    sel = (
        (gagg.control == control)
        & (gagg.method == method)
        & (gagg.base_period == base)
        & (gagg.xformla == xf)
    )
    for kind in ["simple", "dynamic", "group", "calendar"]:
        a = r.aggregate(kind)
        ref = gagg[sel & (gagg.kind == kind)]
        ov = ref[ref.level == "overall"].iloc[0]
        assert a.overall_att == pytest.approx(ov.att, abs=1e-9)
        assert a.overall_se == pytest.approx(ov.se, abs=1e-9)
        by = ref[ref.level == "by"]
        if kind != "simple":
            np.testing.assert_array_equal(a.levels, by.value.to_numpy())
            np.testing.assert_allclose(a.att, by.att.to_numpy(), rtol=0, atol=1e-9)
            np.testing.assert_allclose(
                np.nan_to_num(a.se), np.nan_to_num(by.se.to_numpy()), atol=1e-9
            )


def test_mpdta_known_r_values(mpdta) -> None:
    """Published R did output (did vignette): ATT(2004,2004) = -0.0105 (0.0233), simple -0.04."""
    r = staggered(mpdta, **MPDTA)
    assert r.att[0] == pytest.approx(-0.0105, abs=5e-5)
    assert r.se[0] == pytest.approx(0.0233, abs=5e-5)
    assert r.aggregate("simple").overall_att == pytest.approx(-0.0400, abs=5e-5)


# ------------------------------------------------------------------ live peer: csdid


@pytest.mark.parametrize(
    ("control", "method", "xf"),
    [("never", "dr", "~lpop"), ("notyet", "ipw", "~lpop"), ("notyet", "reg", "")],
)
def test_mpdta_matches_csdid(mpdta, control, method, xf) -> None:
    from csdid.att_gt import ATTgt as CsATTgt

    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(io.StringIO()):
        out = CsATTgt(
            yname="lemp",
            gname="first.treat",
            idname="countyreal",
            tname="year",
            xformla="lemp" + (xf or "~1"),
            data=mpdta,
            control_group="nevertreated" if control == "never" else "notyettreated",
        ).fit(est_method=method, bstrap=False)
        out.aggte("simple", bstrap=False)
    r = staggered(mpdta, **MPDTA, xformla=xf or None, control=control, method=method)
    np.testing.assert_allclose(r.att, np.asarray(out.results["att"], float), atol=1e-9)
    np.testing.assert_allclose(r.se, np.asarray(out.results["se"], float), atol=1e-9)
    a = r.aggregate("simple")
    assert a.overall_att == pytest.approx(float(out.atte["overall_att"]), abs=1e-9)
    assert a.overall_se == pytest.approx(float(out.atte["overall_se"]), abs=1e-9)
    stat = r.pretrend_test().loc[0, "statistic"]  # R did's pre-test Wald statistic
    assert stat == pytest.approx(float(out.MP["W"]), rel=1e-8)
    with contextlib.redirect_stdout(io.StringIO()):
        out.aggte("group", bstrap=False)  # corrected group SE (did PR #223)
    g = r.aggregate("group")
    assert g.overall_att == pytest.approx(float(out.atte["overall_att"]), abs=1e-9)
    assert g.overall_se == pytest.approx(float(out.atte["overall_se"]), abs=1e-9)


# ------------------------------------------------------------------ pre-trend tests


def test_mpdta_pretest_p_value_is_r_did_s(mpdta) -> None:
    # the p-value R did prints under summary(att_gt(...)) (rounded to 5 places there)
    ref = pd.read_csv(GOLDEN / "staggered_mpdta_pretest.csv", keep_default_na=False)
    for row in ref.itertuples():
        r = staggered(
            mpdta, **MPDTA, xformla=row.xformla or None, control=row.control,
            method=row.method, base_period=row.base_period,
        )  # fmt: skip
        pt = r.pretrend_test().iloc[0]
        assert round(float(pt["p_value"]), 5) == row.p_value
        assert pt["df"] == 5 and pt["n_dropped"] == 0 and pt["note"] == ""
        assert pt["test"].startswith("pre-treatment ATT(g,t)")
        assert r.glance().loc[0, "pretrend_p_value"] == pt["p_value"]


def test_pretest_drops_zero_variance_cells_and_refuses_a_singular_covariance(mpdta) -> None:
    from dataclasses import replace

    r = staggered(mpdta, **MPDTA, control="never", method="reg", base_period="universal")
    pt = r.pretrend_test().iloc[0]
    # universal base: the three reference cells (0, SE 0) are left out, as in R did
    pre = (r.times < r.groups) & (r.att != 0)
    assert pt["n_dropped"] == 3 and pt["df"] == pre.sum() == 5
    b, V = r.att[pre], r.vcov[np.ix_(pre, pre)]
    assert pt["statistic"] == pytest.approx(float(b @ np.linalg.inv(V) @ b), rel=1e-10)
    # two pre-treatment cells with the same influence function: V is singular, R did
    # refuses ("singular covariance matrix") and so do we (a pseudo-inverse would not)
    i, j = np.flatnonzero(pre)[:2]
    V2 = r.vcov.copy()
    V2[j, :], V2[:, j] = V2[i, :], V2[:, i]
    V2[j, j] = V2[i, i]
    se2 = r.analytic_se.copy()
    se2[j] = se2[i]
    bad = replace(r, vcov=V2, analytic_se=se2).pretrend_test().iloc[0]
    assert np.isnan(bad["statistic"]) and np.isnan(bad["p_value"])
    assert "singular" in bad["note"]


def test_pretest_of_the_leads_matches_the_golden_event_study(mpdta, golden) -> None:
    _, gagg = golden
    r = staggered(mpdta, **MPDTA, control="never", method="dr")
    ref = gagg[
        (gagg.control == "never") & (gagg.method == "dr") & (gagg.base_period == "varying")
        & (gagg.xformla == "") & (gagg.kind == "dynamic") & (gagg.level == "by")
    ].set_index("value")  # fmt: skip
    # one lead: the Wald statistic is the squared t statistic of R did's e = -1 estimate
    one = r.pretrend_test("leads", min_e=-1).iloc[0]
    t = ref.loc[-1, "att"] / ref.loc[-1, "se"]
    assert one["statistic"] == pytest.approx(t**2, rel=1e-8)
    assert one["df"] == 1 and one["test"].startswith("event-study leads")
    # all three leads: their standard errors are R did's, the test uses their covariance
    three = r.pretrend_test("leads").iloc[0]
    assert three["df"] == 3 and 0 < three["p_value"] < 1
    dyn = r.aggregate("dynamic")
    np.testing.assert_allclose(
        np.sqrt(np.diag(dyn._vcov))[dyn.levels < 0], ref.loc[[-3, -2, -1], "se"], rtol=1e-8
    )
    with pytest.raises(EstimationError, match="'cells' or 'leads'"):
        r.pretrend_test("all")  # type: ignore[arg-type]
    none = r.pretrend_test("leads", min_e=0).iloc[0]  # nothing to test
    assert none["df"] == 0 and np.isnan(none["p_value"])


def null_counts(seed: int, sizes: tuple[int, int], periods: int, never: int) -> pd.DataFrame:
    """Parallel trends by construction: random cohorts, Poisson counts, no effect."""
    rng = np.random.default_rng(seed)
    n_g = rng.integers(sizes[0], sizes[1] + 1, periods - 4)  # cohorts 5..periods
    g = np.concatenate([np.repeat(np.arange(5, periods + 1), n_g), np.zeros(never, int)])
    t = np.arange(1, periods + 1)
    mu = rng.gamma(2.0, 0.7, g.size)[:, None] * (1 + 0.12 * np.cos(np.pi * t / 2))[None, :]
    return pd.DataFrame(
        {
            "id": np.repeat(np.arange(g.size), periods),
            "t": np.tile(t, g.size),
            "g": np.repeat(g, periods),
            "y": rng.poisson(mu).ravel().astype(float),
        }
    )


@pytest.mark.slow
def test_pretests_hold_their_size_where_they_apply() -> None:
    # 60 seeds per design; a test of size 5 % rejects more than 7 times with
    # probability 0.03 (binomial): the bounds below were set before the run
    kw = dict(yname="y", idname="id", tname="t", gname="g", control="notyet",
              method="reg", base_period="universal")  # fmt: skip
    seeds = range(60)
    # national design, small cohorts: 20 cohorts of 15-30 people over 24 quarters
    small = {"cells": 0, "leads": 0}
    for s in seeds:
        r = staggered(null_counts(s, (15, 30), 24, 2000), **kw)
        small["cells"] += int(r.pretrend_test("cells").loc[0, "p_value"] < 0.05)
        small["leads"] += int(r.pretrend_test("leads", min_e=-8).loc[0, "p_value"] < 0.05)
    assert small["leads"] <= 7
    assert small["cells"] >= 50  # 250 restrictions on ~20 people each: unusable
    # few periods, large cohorts (4 cohorts of 250-300 over 8 periods): the cell test works
    big = 0
    for s in seeds:
        r = staggered(null_counts(s, (250, 300), 8, 1000), **kw)
        big += int(r.pretrend_test("cells").loc[0, "p_value"] < 0.05)
    assert big <= 7


# ------------------------------------------------------------------ scale path = row path


@pytest.mark.parametrize(
    ("control", "method", "base", "weights", "cluster"),
    [
        ("never", "dr", "varying", None, None),
        ("notyet", "ipw", "universal", "w", None),
        ("notyet", "reg", "varying", "w", "practice"),
        ("never", "dr", "universal", None, "practice"),
    ],
)
def test_moment_path_equals_row_path(control, method, base, weights, cluster) -> None:
    df = sim_panel()
    kw = dict(
        yname="y",
        idname="id",
        tname="t",
        gname="g",
        control=control,
        method=method,
        base_period=base,
        weights=weights,
        cluster=cluster,
    )
    m = staggered(df, **kw, path="moments")
    r = staggered(df, **kw, path="rows")
    assert m.path == "moments" and r.path == "rows"
    np.testing.assert_array_equal(m.groups, r.groups)
    np.testing.assert_array_equal(m.times, r.times)
    np.testing.assert_allclose(m.att, r.att, rtol=0, atol=1e-10)
    np.testing.assert_allclose(m._sigma, r._sigma, rtol=0, atol=1e-10 * np.abs(r._sigma).max())
    for kind in ["simple", "dynamic", "group", "calendar"]:
        am, ar = m.aggregate(kind), r.aggregate(kind)
        assert am.overall_att == pytest.approx(ar.overall_att, abs=1e-10)
        assert am.overall_se == pytest.approx(ar.overall_se, abs=1e-10)


def test_cluster_se_is_cluster_sum_of_influence_functions() -> None:
    """Clustering by the unit id itself changes nothing; by practice it changes the SEs."""
    df = sim_panel()
    base = staggered(df, yname="y", idname="id", tname="t", gname="g")
    same = staggered(df, yname="y", idname="id", tname="t", gname="g", cluster="id")
    prac = staggered(df, yname="y", idname="id", tname="t", gname="g", cluster="practice")
    np.testing.assert_allclose(base.se, same.se, rtol=1e-12)
    np.testing.assert_allclose(base.att, prac.att, rtol=1e-12)
    assert np.nanmax(np.abs(base.se - prac.se)) > 1e-4


def test_weights_match_csdid() -> None:
    """Sampling weights: same ATT(g,t), SEs and aggregation as R did's port csdid.

    (moderndid 0.2 drops the weights from its aggregation weights, unlike R did and
    csdid, so it is not the reference here.)
    """
    from csdid.att_gt import ATTgt as CsATTgt

    warnings.simplefilter("ignore")
    df = sim_panel(n=200, T=6, seed=3)
    with contextlib.redirect_stdout(io.StringIO()):
        out = CsATTgt(
            yname="y",
            gname="g",
            idname="id",
            tname="t",
            xformla="y~x",
            data=df,
            control_group="notyettreated",
            weights_name="w",
        ).fit(est_method="dr", bstrap=False)
        out.aggte("dynamic", bstrap=False)
    r = staggered(
        df,
        yname="y",
        idname="id",
        tname="t",
        gname="g",
        weights="w",
        xformla="~x",
        control="notyet",
    )
    np.testing.assert_allclose(r.att, np.asarray(out.results["att"], float), atol=1e-9)
    np.testing.assert_allclose(r.se, np.asarray(out.results["se"], float), atol=1e-9)
    a = r.aggregate("dynamic")
    assert a.overall_att == pytest.approx(float(out.atte["overall_att"]), abs=1e-9)
    assert a.overall_se == pytest.approx(float(out.atte["overall_se"]), abs=1e-9)
    np.testing.assert_allclose(a.att, np.asarray(out.atte["att_egt"], float), atol=1e-9)
    np.testing.assert_allclose(a.se, np.asarray(out.atte["se_egt"], float), atol=1e-9)


# ------------------------------------------------------------------ invariances


def test_row_order_and_id_labels_do_not_matter() -> None:
    df = sim_panel(n=150, T=6, seed=5)
    a = staggered(df, yname="y", idname="id", tname="t", gname="g", xformla="~x")
    shuffled = df.sample(frac=1.0, random_state=7).copy()
    shuffled["id"] = "unit-" + (shuffled["id"] * 7919 % 1000003).astype(str)
    b = staggered(shuffled, yname="y", idname="id", tname="t", gname="g", xformla="~x")
    np.testing.assert_allclose(a.att, b.att, rtol=0, atol=1e-12)
    np.testing.assert_allclose(a.se, b.se, rtol=0, atol=1e-12)


def test_dynamic_aggregation_recovers_true_effects() -> None:
    """sim_panel's effect is 0.3 * (e + 1) after treatment and 0 before."""
    df = sim_panel(n=3000, T=8, seed=11)
    a = staggered(df, yname="y", idname="id", tname="t", gname="g").aggregate("dynamic")
    truth = np.where(a.levels >= 0, 0.3 * (a.levels + 1), 0.0)
    z = (a.att - truth) / a.se
    assert np.all(np.abs(z) < 4.5)
    assert np.max(np.abs(a.att - truth)) < 0.1


def test_balance_e_and_window(mpdta) -> None:
    r = staggered(mpdta, **MPDTA)
    a = r.aggregate("dynamic", min_e=-2, max_e=2)
    np.testing.assert_array_equal(a.levels, [-2, -1, 0, 1, 2])
    b = r.aggregate("dynamic", balance_e=1)
    np.testing.assert_array_equal(b.levels, [-2, -1, 0, 1])
    full = r.aggregate("dynamic")
    # e = 0 with balance_e=1 excludes the 2007 cohort (observed only at e = 0)
    assert b.att[b.levels == 0][0] != pytest.approx(full.att[full.levels == 0][0])
    import moderndid as md

    warnings.simplefilter("ignore")
    ref = md.att_gt(
        mpdta,
        yname="lemp",
        tname="year",
        idname="countyreal",
        gname="first.treat",
        boot=False,
        cband=False,
    )
    for ours, kw in ((a, {"min_e": -2, "max_e": 2}), (b, {"balance_e": 1})):
        theirs = md.aggte(ref, type="dynamic", boot=False, cband=False, **kw)
        np.testing.assert_array_equal(ours.levels, theirs.event_times)
        np.testing.assert_allclose(ours.att, theirs.att_by_event, atol=1e-9)
        np.testing.assert_allclose(ours.se, theirs.se_by_event, atol=1e-9)
        assert ours.overall_se == pytest.approx(theirs.overall_se, abs=1e-9)


# ------------------------------------------------------------------ bootstrap


def test_bootstrap_is_seeded_and_close_to_analytic(mpdta) -> None:
    a = staggered(mpdta, **MPDTA, bootstrap=999, seed=42)
    b = staggered(mpdta, **MPDTA, bootstrap=999, seed=42)
    c = staggered(mpdta, **MPDTA, bootstrap=999, seed=43)
    np.testing.assert_array_equal(a.se, b.se)
    assert a.crit == b.crit
    assert not np.array_equal(a.se, c.se)
    np.testing.assert_allclose(a.se, a.analytic_se, rtol=0.12)
    assert 1.96 < a.crit < 4.0  # uniform band over 12 cells is wider than pointwise
    d1 = a.aggregate("dynamic")
    d2 = b.aggregate("dynamic")
    np.testing.assert_array_equal(d1.se, d2.se)
    assert d1.band == "uniform" and d1.crit > 1.96
    an = staggered(mpdta, **MPDTA).aggregate("dynamic")
    np.testing.assert_allclose(d1.se[np.isfinite(an.se)], an.se[np.isfinite(an.se)], rtol=0.12)
    assert d1.overall_se == pytest.approx(an.overall_se, rel=0.12)


def test_bootstrap_same_on_both_paths() -> None:
    df = sim_panel(n=300, T=6, seed=2)
    kw = dict(yname="y", idname="id", tname="t", gname="g", bootstrap=200, seed=9)
    m = staggered(df, **kw, path="moments")
    r = staggered(df, **kw, path="rows")
    np.testing.assert_allclose(m.se, r.se, rtol=1e-8)
    assert m.crit == pytest.approx(r.crit, rel=1e-8)


# ------------------------------------------------------------------ data handling and errors


def test_attrition_counts_dropped_units() -> None:
    df = sim_panel(n=120, T=6, seed=4)
    df.loc[df["id"] == 3, "g"] = 1  # treated in the first period
    df = df[~((df["id"] == 5) & (df["t"] == 4))]  # unbalanced
    df.loc[(df["id"] == 8) & (df["t"] == 2), "y"] = np.nan
    r = staggered(df, yname="y", idname="id", tname="t", gname="g")
    att = r.attrition.set_index("reason")
    assert r.n_units == 117
    assert att.filter(like="first period", axis=0)["units"].iloc[0] == 1
    assert att.filter(like="every period", axis=0)["units"].iloc[0] == 2
    assert att.filter(like="missing", axis=0)["rows"].iloc[0] == 1


def test_errors_name_the_problem() -> None:
    df = sim_panel(n=50, T=5)
    with pytest.raises(DataError, match="not_there"):
        staggered(df, yname="not_there", idname="id", tname="t", gname="g")
    with pytest.raises(EstimationError, match="seed"):
        staggered(df, yname="y", idname="id", tname="t", gname="g", bootstrap=100)
    bad = df.copy()
    bad.loc[bad.index[:3], "g"] = 4
    with pytest.raises(DataError, match="varies within"):
        staggered(bad, yname="y", idname="id", tname="t", gname="g")
    with pytest.raises(DataError, match="repeat"):
        staggered(pd.concat([df, df.iloc[:2]]), yname="y", idname="id", tname="t", gname="g")


def test_no_never_treated_notyet_drops_last_periods() -> None:
    """As R did: without never-treated units, periods from the last cohort on are dropped."""
    import moderndid as md

    warnings.simplefilter("ignore")
    df = sim_panel(n=200, T=7, seed=6, never_share=0.0)
    df = df[df.g.between(1, 7)]
    r = staggered(df, yname="y", idname="id", tname="t", gname="g", control="notyet")
    ref = md.att_gt(
        df,
        yname="y",
        tname="t",
        idname="id",
        gname="g",
        boot=False,
        cband=False,
        control_group="notyettreated",
    )
    np.testing.assert_allclose(r.att, ref.att_gt, atol=1e-9)
    np.testing.assert_allclose(r.se, ref.se_gt, atol=1e-9)
    assert r.times.max() < 6


def test_tidy_glance_summary_plot(mpdta) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    r = staggered(mpdta, **MPDTA, base_period="universal")
    assert isinstance(r, ATTgt)
    t = r.tidy()
    for c in [
        "term",
        "estimate",
        "std_error",
        "statistic",
        "p_value",
        "conf_low",
        "conf_high",
        "n",
        "group",
        "time",
        "event",
    ]:
        assert c in t.columns
    assert len(t) == 15  # universal: 3 cohorts x 5 periods incl. the reference rows
    assert (t.loc[t.event == -1, "estimate"] == 0).all()
    g = r.glance()
    assert g.loc[0, "n_units"] == 500 and g.loc[0, "path"] == "moments"
    assert 0 <= g.loc[0, "pretrend_p_value"] <= 1
    assert "control=never" in r.summary()
    d = r.aggregate("dynamic")
    td = d.tidy()
    assert td.loc[0, "term"] == "overall" and td.loc[0, "estimate"] == d.overall_att
    assert isinstance(d.plot(), Figure) and isinstance(r.plot(), Figure)
    assert "Overall ATT" in d.summary()


# ------------------------------------------------------------------ engine (DuckDB via Ibis)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"weights": "w", "control": "notyet"},
        {"weights": "w", "cluster": "practice", "base_period": "universal", "method": "ipw"},
        {"weights": "w", "cluster": "practice", "control": "notyet", "allow_unbalanced": True},
    ],
)
def test_duckdb_engine_moments_equal_pandas(kw) -> None:
    import ibis

    df = sim_panel(n=300, T=6, seed=2)
    df.loc[df["id"] == 4, "g"] = 1  # already treated: dropped in both
    df = df[~((df["id"] == 7) & (df["t"] == 3))]  # unbalanced: dropped in both
    con = ibis.duckdb.connect()
    tbl = con.create_table("panel", df)
    a = staggered(df, yname="y", idname="id", tname="t", gname="g", **kw)
    b = staggered(tbl, yname="y", idname="id", tname="t", gname="g", **kw)
    assert b.path == "moments" and b.n_units == a.n_units == (
        299 if kw.get("allow_unbalanced") else 298
    )
    np.testing.assert_allclose(b.att, a.att, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.se, a.se, rtol=0, atol=1e-10)
    pd.testing.assert_frame_equal(a.attrition, b.attrition)
    assert b.aggregate("dynamic").overall_se == pytest.approx(
        a.aggregate("dynamic").overall_se, abs=1e-10
    )


@pytest.mark.parametrize(
    ("control", "method", "base"),
    list(itertools.product(["never", "notyet"], ["dr", "ipw", "reg"], ["varying", "universal"])),
)
def test_duckdb_engine_with_covariates_equals_row_path_and_r(
    mpdta, golden, control, method, base
) -> None:
    """xformla on an engine table: unit rows pivoted in DuckDB = the pandas row path = R did."""
    import ibis

    tbl = ibis.duckdb.connect().create_table("mpdta", mpdta)
    kw = {"xformla": "~lpop", "control": control, "method": method, "base_period": base}
    a = staggered(mpdta, **MPDTA, **kw)
    b = staggered(tbl, **MPDTA, **kw)
    assert a.path == b.path == "rows" and b.n_units == a.n_units == 500
    np.testing.assert_array_equal(b.groups, a.groups)
    np.testing.assert_array_equal(b.times, a.times)
    np.testing.assert_allclose(b.att, a.att, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.se, a.se, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.vcov, a.vcov, rtol=0, atol=1e-10)
    pd.testing.assert_frame_equal(a.attrition, b.attrition)
    for kind in ["simple", "dynamic", "group", "calendar"]:
        x, y = a.aggregate(kind), b.aggregate(kind)
        assert y.overall_att == pytest.approx(x.overall_att, abs=1e-10)
        assert y.overall_se == pytest.approx(x.overall_se, abs=1e-10)
    gatt = golden[0]
    ref = gatt[
        (gatt.control == control)
        & (gatt.method == method)
        & (gatt.base_period == base)
        & (gatt.xformla == "~lpop")
    ].sort_values(["group", "time"])
    order = np.lexsort((b.times, b.groups))
    np.testing.assert_allclose(b.att[order], ref["att"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(
        np.nan_to_num(b.se[order]), ref["se"].fillna(0).to_numpy(), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("xformla", [None, "~x", "~x + region + flag", "~xt", "~xt + region"])
@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"weights": "w", "cluster": "practice", "control": "notyet", "method": "ipw"},
        {"weights": "w", "base_period": "universal", "method": "reg"},
    ],
)
def test_duckdb_engine_covariates_drops_and_types_equal_row_path(xformla, kw) -> None:
    """Time-varying, text and boolean covariates, weights, clusters and every drop reason."""
    import ibis

    df = sim_panel(n=300, T=6, seed=2)
    df["xt"] = df["x"] + 0.1 * df["t"] * (df["id"] % 2)  # varies within half the units
    df["region"] = np.array(["north", "south", "east"])[df["id"] % 3]
    df["flag"] = df["id"] % 4 == 0
    df.loc[df["id"] == 4, "g"] = 1  # already treated in the first period
    df = df[~((df["id"] == 7) & (df["t"] == 3))]  # not observed in every period
    df.loc[(df["id"] == 8) & (df["t"] == 2), ["x", "xt"]] = np.nan  # missing covariate
    tbl = ibis.duckdb.connect().create_table("panel", df)
    kw = {**kw, "xformla": xformla, "path": "rows"}  # no covariates: the rows path all the same
    a = staggered(df, yname="y", idname="id", tname="t", gname="g", **kw)
    b = staggered(tbl, yname="y", idname="id", tname="t", gname="g", **kw)
    again = staggered(tbl, yname="y", idname="id", tname="t", gname="g", **kw)
    np.testing.assert_array_equal(again.att, b.att)  # reproducible: units in id order
    np.testing.assert_array_equal(again.vcov, b.vcov)
    assert b.path == "rows" and b.n_units == a.n_units == (297 if xformla else 298)
    np.testing.assert_allclose(b.att, a.att, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.se, a.se, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.vcov, a.vcov, rtol=0, atol=1e-10)
    pd.testing.assert_frame_equal(a.attrition, b.attrition)
    reasons = {
        "unit already treated in the first period",
        "unit not observed in every period (balanced panel required)",
    }
    if xformla:  # the missing covariate drops a row, and so its unit
        reasons.add("missing outcome, period, unit, weight, cluster or covariate")
    assert set(b.attrition["reason"]) == reasons


def test_engine_rows_pull_one_value_per_unit_for_constant_covariates() -> None:
    """Constant covariates come back once per unit (broadcast); varying ones per period."""
    import ibis

    from spevidence.did._ibis_moments import PivotSpec, cs_rows_stream

    df = sim_panel(n=200, T=5, seed=4)
    df["xt"] = df["x"] + 0.01 * df["t"]
    tbl = ibis.duckdb.connect().create_table("panel", df)
    common = {"yname": "y", "idname": "id", "tname": "t", "gname": "g", "weights": None}
    common |= {"cluster": None, "anticipation": 0, "control": "never"}
    spec = PivotSpec(**common, exposure=None)
    const = cs_rows_stream(tbl, spec, covs=("x",), batch_rows=64)
    assert const.Xt.shape == (5, 200, 2) and const.Xt.strides[0] == 0
    varying = cs_rows_stream(tbl, spec, covs=("xt",), batch_rows=64)
    assert varying.Xt.shape == (5, 200, 2) and varying.Xt.strides[0] != 0
    wide = df.pivot(index="id", columns="t", values="xt").to_numpy()
    np.testing.assert_array_equal(varying.Xt[:, :, 1], wide.T)
    np.testing.assert_array_equal(const.Xt[3, :, 1], df.groupby("id")["x"].first().to_numpy())
    np.testing.assert_array_equal(const.Y, df.pivot(index="id", columns="t", values="y"))
    with pytest.raises(DataError, match=r"\['nope'\] not found"):
        cs_rows_stream(tbl, spec, covs=("nope",))


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_spark_engine_moments_equal_pandas(spark_session) -> None:  # type: ignore[no-untyped-def]
    """The same Ibis moment queries on PySpark give the DuckDB/pandas answer."""
    import ibis

    session = spark_session
    con = ibis.pyspark.connect(session)
    df = sim_panel(n=120, T=5, seed=2)
    tbl = con.create_table("spevidence_staggered_panel", df, overwrite=True)
    kw = {"weights": "w", "cluster": "practice", "control": "notyet"}
    b = staggered(tbl, yname="y", idname="id", tname="t", gname="g", **kw)
    a = staggered(df, yname="y", idname="id", tname="t", gname="g", **kw)
    assert b.path == "moments"
    np.testing.assert_allclose(b.att, a.att, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.se, a.se, rtol=0, atol=1e-10)


@pytest.mark.spark
@pytest.mark.xdist_group("spark")
def test_spark_engine_with_covariates_equals_row_path(spark_session) -> None:  # type: ignore[no-untyped-def]
    """xformla on a Spark table: the unit pivot streamed from Spark = the pandas row path."""
    import ibis

    con = ibis.pyspark.connect(spark_session)
    df = sim_panel(n=120, T=5, seed=2)
    df["region"] = np.array(["north", "south", "east"])[df["id"] % 3]
    tbl = con.create_table("spevidence_staggered_cov_panel", df, overwrite=True)
    kw = {"weights": "w", "cluster": "practice", "control": "notyet", "xformla": "~x + region"}
    b = staggered(tbl, yname="y", idname="id", tname="t", gname="g", **kw)
    a = staggered(df, yname="y", idname="id", tname="t", gname="g", **kw)
    assert b.path == "rows"
    np.testing.assert_allclose(b.att, a.att, rtol=0, atol=1e-10)
    np.testing.assert_allclose(b.se, a.se, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ property: moments = rows


def test_moment_path_equals_row_path_property() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=25, deadline=None, derandomize=True)
    @given(
        seed=st.integers(0, 10_000),
        n=st.integers(30, 90),
        T=st.integers(4, 7),
        control=st.sampled_from(["never", "notyet"]),
        method=st.sampled_from(["dr", "ipw", "reg"]),
        base=st.sampled_from(["varying", "universal"]),
        weighted=st.booleans(),
        anticipation=st.integers(0, 1),
    )
    def check(seed, n, T, control, method, base, weighted, anticipation) -> None:
        rng = np.random.default_rng(seed)
        g = rng.choice([0, *range(2, T + 2)], size=n)
        y = rng.normal(size=(n, T)) + rng.normal(size=(n, 1))
        df = pd.DataFrame(
            {
                "id": np.repeat(np.arange(n), T),
                "t": np.tile(np.arange(1, T + 1), n),
                "g": np.repeat(g, T),
                "y": y.ravel(),
                "w": np.repeat(rng.uniform(0.5, 2.0, n), T),
            }
        )
        kw = dict(
            yname="y",
            idname="id",
            tname="t",
            gname="g",
            control=control,
            method=method,
            base_period=base,
            anticipation=anticipation,
            weights="w" if weighted else None,
        )
        try:
            m = staggered(df, **kw, path="moments")
        except EstimationError:
            with pytest.raises(EstimationError):
                staggered(df, **kw, path="rows")
            return
        r = staggered(df, **kw, path="rows")
        np.testing.assert_array_equal(m.groups, r.groups)
        np.testing.assert_array_equal(m.times, r.times)
        np.testing.assert_allclose(m.att, r.att, rtol=0, atol=1e-10)
        np.testing.assert_allclose(
            m._sigma, r._sigma, rtol=0, atol=1e-10 * max(1.0, np.abs(r._sigma).max())
        )

    check()


@pytest.mark.parametrize(
    ("control", "base", "xf"), [("notyet", "universal", None), ("never", "varying", "~lpop")]
)
def test_anticipation_matches_moderndid(mpdta, control, base, xf) -> None:
    import moderndid as md

    warnings.simplefilter("ignore")
    ref = md.att_gt(
        mpdta,
        yname="lemp",
        tname="year",
        idname="countyreal",
        gname="first.treat",
        anticipation=1,
        control_group="notyettreated" if control == "notyet" else "nevertreated",
        base_period=base,
        xformla=xf,
        boot=False,
        cband=False,
    )
    r = staggered(mpdta, **MPDTA, anticipation=1, control=control, base_period=base, xformla=xf)
    np.testing.assert_allclose(r.att, ref.att_gt, atol=1e-9)
    np.testing.assert_allclose(np.nan_to_num(r.se), np.nan_to_num(ref.se_gt), atol=1e-9)
    for kind in ["simple", "dynamic", "group", "calendar"]:
        a = md.aggte(ref, type=kind, boot=False, cband=False)
        o = r.aggregate(kind)
        assert o.overall_att == pytest.approx(a.overall_att, abs=1e-9)
        assert o.overall_se == pytest.approx(a.overall_se, abs=1e-9)


# ------------------------------------------------------------------ unbalanced panels


@pytest.mark.parametrize("control", ["never", "notyet"])
def test_unbalanced_panel_matches_csdid(control) -> None:
    """allow_unbalanced=True = R did's allow_unbalanced_panel (checked against csdid)."""
    from csdid.att_gt import ATTgt as CsATTgt

    warnings.simplefilter("ignore")
    df = sim_panel(n=300, T=6, seed=8)
    df = df[np.random.default_rng(1).random(len(df)) > 0.15].reset_index(drop=True)
    r = staggered(
        df, yname="y", idname="id", tname="t", gname="g", allow_unbalanced=True, control=control
    )
    bal = staggered(df, yname="y", idname="id", tname="t", gname="g", control=control)
    assert r.n_units == 300 and bal.n_units < 200  # balancing would drop most units
    with contextlib.redirect_stdout(io.StringIO()):
        out = CsATTgt(
            yname="y",
            gname="g",
            idname="id",
            tname="t",
            xformla="y~1",
            data=df,
            allow_unbalanced_panel=True,
            control_group="nevertreated" if control == "never" else "notyettreated",
        ).fit(est_method="dr", bstrap=False)
        out.aggte("simple", bstrap=False)
    np.testing.assert_allclose(r.att, np.asarray(out.results["att"], float), atol=1e-9)
    np.testing.assert_allclose(r.se, np.asarray(out.results["se"], float), atol=1e-9)
    a = r.aggregate("simple")
    assert a.overall_att == pytest.approx(float(out.atte["overall_att"]), abs=1e-9)
    assert a.overall_se == pytest.approx(float(out.atte["overall_se"]), abs=1e-9)


def test_unbalanced_option_on_balanced_panel_is_the_panel_estimator() -> None:
    df = sim_panel(n=200, T=6, seed=3)
    a = staggered(df, yname="y", idname="id", tname="t", gname="g", allow_unbalanced=True)
    b = staggered(df, yname="y", idname="id", tname="t", gname="g")
    np.testing.assert_array_equal(a.att, b.att)
    np.testing.assert_array_equal(a.se, b.se)
    with pytest.raises(EstimationError, match="covariates"):
        staggered(
            df, yname="y", idname="id", tname="t", gname="g", xformla="~x", allow_unbalanced=True
        )


@pytest.mark.parametrize(
    "ids",
    [[3, 3, 5, 5, 5, 9], [1.0, 2.0, 2.0, 7.5], [5, 3, 3, 8], ["b", "a", "b"], [7], [2, 2, 1, 1]],
)
def test_unit_codes_equal_sorted_factorize(ids):
    """The sorted-ids shortcut gives exactly pandas' sorted codes (and falls back otherwise)."""
    from spevidence.did._staggered import _unit_codes

    s = pd.Series(ids)
    assert np.array_equal(_unit_codes(s), pd.factorize(s, sort=True)[0])
